"""The ask pipeline: one question in, one cited ``Answer`` out.

    question ─▶ rate limit ─▶ injection policy ─▶ query embedding (cache layer 1)
             ─▶ result cache (layer 2) ─▶ retrieve ─▶ drop injected passages
             ─▶ quotes (shown at once) ─▶ gate: evidence missing? say so, no model
             ─▶ generate (provider chain, streamed) ─▶ evidence check of every
                sentence (markers fixed, unsupported sentences marked or dropped;
                an unsupported answer gives way to the quotes) ─▶ cache ─▶ Answer

A model's output is never shown as cited unchecked: every citation of the
final answer carries the passage sentence that supports it (``Citation.quote``),
and a quote that is not its passage's own text cannot be built.

``AskPipeline`` owns none of its collaborators: ``Services`` builds them and
passes them in, so the pipeline can be tested with the parts it needs. Every
ask leaves one audit event (``ask``) whatever its outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from core.answer import gate
from core.audit import AuditFn
from core.cache import CacheService, make_namespace
from core.config import Settings
from core.errors import RateLimited
from core.evidence.support import NOT_FOUND, QuoteEvidence, check_answer, find_quotes
from core.logs import request_context
from core.providers.openai import PROMPT_VERSION
from core.providers.router import Attempt, Done, MidStreamFailure, ProviderRouter, Token
from core.retrieval.retriever import Retriever
from core.security.injection import InjectionDetector
from core.security.ratelimit import RateLimiter
from core.security.sanitize import clean_question
from core.types import (
    Answer,
    AnswerChunk,
    AnswerSentence,
    CacheMatch,
    Citation,
    ContextPassage,
    FloatArray,
    GenerationRequest,
    ScoredChunk,
    SearchFilters,
)

log = logging.getLogger(__name__)

REFUSAL = (
    "This question was not answered: it looks like an attempt to change Archivist's "
    "instructions ({categories}). Ask about the content of your documents instead."
)

# Bumped when the evidence check or the gate changes what an answer looks like,
# so answers cached by an older check are not served again.
CHECK_VERSION = 9
# How deep the ranking is searched for a passage that mentions what the question
# names when none of the top ones does (AskPipeline._with_named_passages). Set by
# reasoning (a few times the passages an answer reads), not tuned.
NAMED_PASSAGE_DEPTH = 30

TokenCallback = Callable[[AnswerChunk], None]
QuotesCallback = Callable[[tuple[Citation, ...]], None]

ABSTAIN_NOTICE = "The closest passages are shown below; none of them answers the question."
MODEL_NOT_FOUND_NOTICE = (
    "The model found no answer in these passages; "
    "the sentences closest to your question are shown instead. Check them."
)
OFF_TOPIC_NOTICE = (
    "This answer rests on passages that share few of your question's words; "
    "check that it answers what you asked."
)
UNSUPPORTED_NOTICE = (
    "The model's answer could not be found in your documents; "
    "the passages' own words are shown instead."
)


def _payload(answer: Answer) -> dict[str, Any]:
    """What the result cache keeps of an answer (JSON-able)."""
    return {
        "text": answer.text,
        "provider": answer.provider,
        "notice": answer.notice,
        "citations": [c.to_json() for c in answer.citations],
        "quotes": [c.to_json() for c in answer.quotes],
        "sentences": [
            {
                "text": s.text,
                "start": s.start,
                "end": s.end,
                "supported": s.supported,
                "markers": list(s.markers),
                "score": s.score,
            }
            for s in answer.sentences
        ],
        "abstained": answer.abstained,
    }


def _answer_from_payload(
    question: str, payload: dict[str, Any], timings: dict[str, float], request_id: str
) -> Answer:
    return Answer(
        question=question,
        text=str(payload.get("text", "")),
        citations=tuple(Citation.from_json(c) for c in payload.get("citations", [])),
        provider=str(payload.get("provider", "")),
        cache="result",
        degraded=False,
        timings_ms=timings,
        request_id=request_id,
        notice=payload.get("notice"),
        quotes=tuple(Citation.from_json(c) for c in payload.get("quotes", [])),
        sentences=tuple(
            AnswerSentence(
                text=str(x["text"]),
                start=int(x["start"]),
                end=int(x["end"]),
                supported=bool(x["supported"]),
                markers=tuple(int(m) for m in x.get("markers", [])),
                score=float(x.get("score", 0.0)),
            )
            for x in payload.get("sentences", [])
        ),
        abstained=bool(payload.get("abstained", False)),
    )


@dataclasses.dataclass(slots=True)
class AskTrace:
    """What one ask did, for the audit log (filled in as the ask proceeds)."""

    request_id: str
    session: str
    question: str
    outcome: str = "failed"
    provider: str = ""
    cache_layer: str = "miss"
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


class AskPipeline:
    """Answers questions; see the module docstring for the steps."""

    def __init__(
        self,
        settings: Settings,
        retriever: Retriever,
        router: ProviderRouter,
        *,
        cache: CacheService | None,
        limiter: RateLimiter | None,
        detector: InjectionDetector,
        audit: AuditFn,
        kb_version: Callable[[], int | str],
    ) -> None:
        self._settings = settings
        self._retriever = retriever
        self._router = router
        self._cache = cache
        self._limiter = limiter
        self._detector = detector
        self._audit = audit
        self._kb_version = kb_version
        self.asks = 0  # questions asked in this process (for the stats view)

    def _namespace(self) -> str:
        """Cached answers are scoped by knowledge base, provider chain, retrieval,
        answer check and prompt: a change of any of them retires them."""
        router = self._router
        chain = []
        for p in router.providers:
            settings = getattr(p, "settings", None)
            chain.append(f"{p.name}:{getattr(settings, 'model', '')}")
        if router.fallback is not None:
            chain.append(router.fallback.name)
        r = self._settings.retrieval
        scope = f"top{r.top_k}:{r.fusion}:passages"
        if self._retriever.reranker is not None:
            scope += f":rerank={self._retriever.reranker.name}"
        scope += f"|check={CHECK_VERSION}:{self._settings.answer.unsupported}"
        return make_namespace(self._kb_version(), ",".join(chain) + "|" + scope, PROMPT_VERSION)

    async def ask(
        self,
        question: str,
        *,
        use_cache: bool = True,
        on_token: TokenCallback | None = None,
        on_quotes: QuotesCallback | None = None,
        filters: SearchFilters | None = None,
        top_k: int | None = None,
        session: str = "default",
        skip_providers: Collection[str] = (),
    ) -> Answer:
        """Answer ``question`` from the knowledge base, with citations.

        ``on_quotes`` receives the best supporting sentences of the retrieved
        passages once, before any model runs (``()`` when there are none);
        ``on_token`` receives the model's answer as it streams.

        Raises ``UsageError`` for an empty or over-long question and
        ``RateLimited`` when the session asks too fast; every other fault ends in
        an answer (degraded if need be), never in an exception.
        ``skip_providers`` regenerates an answer that broke off mid-stream on the
        next providers (and bypasses the cache).
        """
        text = clean_question(question, self._settings.security.max_question_chars)
        t_start = time.perf_counter()
        # The background embedding of an ingestion waits while a question is
        # answered (its vector, the search, the model, the check): the answer the
        # user waits for gets the cores (tests/bench/answer_during_fill.py).
        with request_context() as rid, self._retriever.foreground():
            trace = AskTrace(rid, session, text)
            try:
                return await self._ask(
                    text,
                    trace,
                    use_cache and not skip_providers,
                    on_token,
                    on_quotes,
                    filters,
                    top_k,
                    skip_providers,
                )
            except RateLimited:
                trace.outcome = "rate_limited"
                raise
            except BaseException as exc:
                trace.outcome = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
                trace.detail["error"] = type(exc).__name__
                raise
            finally:
                trace.timings["total"] = (time.perf_counter() - t_start) * 1000
                self._record(trace)

    async def _ask(
        self,
        text: str,
        trace: AskTrace,
        use_cache: bool,
        on_token: TokenCallback | None,
        on_quotes: QuotesCallback | None,
        filters: SearchFilters | None,
        top_k: int | None,
        skip_providers: Collection[str],
    ) -> Answer:
        timings = trace.timings
        t_start = time.perf_counter()
        if self._limiter is not None:
            (await self._limiter.acquire(trace.session)).raise_if_denied()

        notices: list[str] = []
        refusal = self._question_policy(text, trace, notices)
        if refusal is not None:
            return refusal

        await self._retriever.index()
        timings["wait_index"] = (time.perf_counter() - t_start) * 1000
        cache = (
            self._cache if use_cache and self._cache is not None and self._cache.enabled else None
        )
        qvec = await self._cached_query_vector(text, trace, cache)
        namespace = self._namespace()
        if cache is not None and qvec is not None and filters is None and top_k is None:
            hit = await self._cached_answer(cache, namespace, text, qvec, trace, t_start)
            if hit is not None:
                if on_quotes is not None:
                    on_quotes(hit.quotes)
                if on_token is not None:
                    on_token(AnswerChunk(hit.text, hit.provider))
                return hit
        k = top_k or self._settings.retrieval.top_k
        # Passage order, not page order: more of the passages that hold the answer
        # reach the reader (figures at Retriever.search).
        scored = await self._retriever.search(
            text, k=k, filters=filters, timings=timings, query_vector=qvec, by_page=False
        )

        # Retrieved text is data. Passages that read like instructions to a model
        # (indirect injection) are left out of the prompt and the user is told.
        # Flags are stored per chunk at ingestion; a chunk stored before that is
        # scored here, in a worker thread, not on the (GUI) event loop.
        kept = await asyncio.to_thread(self._without_injections, scored)
        dropped = len(scored) - len(kept)
        kept = await self._with_named_passages(text, kept, filters, qvec, trace)
        if dropped:
            trace.detail["passages_dropped"] = dropped
            notices.append(
                f"{dropped} retrieved passage(s) contained text that looks like instructions "
                "to an AI model and were left out."
            )
        answer = await self._answer(text, kept, trace, on_token, on_quotes, skip_providers, notices)
        # What the search returned, and any deeper passage read in the last place.
        have = {sc.chunk.id for sc in scored}
        deeper = tuple(sc for sc in kept if sc.chunk.id not in have)
        answer = dataclasses.replace(answer, retrieved=(*scored, *deeper))
        timings["total"] = (time.perf_counter() - t_start) * 1000
        # Only a complete, normal answer is worth serving again.
        if (
            cache is not None
            and qvec is not None
            and trace.outcome in {"ok", "not_found"}
            and filters is None
            and top_k is None
            and not dropped
        ):
            doc_ids = {sc.chunk.document_id for sc in kept}
            entry = await cache.put_result(namespace, text, qvec, _payload(answer), doc_ids)
            answer = dataclasses.replace(answer, cache_entry=entry)
        return answer

    async def _with_named_passages(
        self,
        text: str,
        kept: list[ScoredChunk],
        filters: SearchFilters | None,
        qvec: FloatArray | None,
        trace: AskTrace,
    ) -> list[ScoredChunk]:
        """The passages, with a deeper one in place of the last when the question
        names something (a number, an identifier) that none of them mentions.

        The gate abstains when no passage mentions what the question names ("the
        largest value chr() accepts" with no passage on chr()): the documents may
        still mention it, lower in the ranking, below passages that share the
        question's other words. The best passage among the next ones that mentions
        it takes the last place; when none does, the gate abstains as before. Seen
        on the Python docs set (tuning): one answerable question abstained so.
        """
        missing = await asyncio.to_thread(gate.missing_constraints, text, kept)
        if not missing or not kept:
            return kept
        t0 = time.perf_counter()
        deeper = await self._retriever.search(
            text,
            k=NAMED_PASSAGE_DEPTH,
            filters=filters,
            timings={},
            query_vector=qvec,
            by_page=False,
        )
        have = {sc.chunk.id for sc in kept}
        candidates = await asyncio.to_thread(
            self._without_injections, [sc for sc in deeper if sc.chunk.id not in have]
        )
        found = await asyncio.to_thread(
            gate.naming_passages, missing, candidates, min(len(missing), len(kept))
        )
        trace.timings["named_passages"] = (time.perf_counter() - t0) * 1000
        if not found:
            return kept
        trace.detail["named_passages"] = [sc.chunk.id for sc in found]
        return kept[: len(kept) - len(found)] + found

    def _question_policy(self, text: str, trace: AskTrace, notices: list[str]) -> Answer | None:
        """The injection policy for the user's question: a refusal, or None to go on."""
        report = self._detector.scan(text, source="question")
        if report.flagged:
            trace.detail["injection"] = {"score": report.score, "categories": report.categories}
        if report.blocked and self._settings.security.question_policy == "refuse":
            trace.outcome = "refused"
            trace.provider = "policy"
            return Answer(
                question=text,
                text=REFUSAL.format(categories=", ".join(report.categories)),
                citations=(),
                provider="policy",
                cache="miss",
                degraded=False,
                timings_ms=trace.timings,
                request_id=trace.request_id,
                notice="Refused by the prompt-injection policy (security.question_policy).",
            )
        if report.flagged:
            notices.append(
                "This question looks like it tries to change Archivist's instructions ("
                + ", ".join(report.categories)
                + "); it was answered from your documents only."
            )
        return None

    async def _cached_answer(
        self,
        cache: CacheService,
        namespace: str,
        text: str,
        qvec: FloatArray,
        trace: AskTrace,
        t_start: float,
    ) -> Answer | None:
        t0 = time.perf_counter()
        hit = await cache.lookup_result(namespace, text, qvec)
        trace.timings["cache_lookup"] = (time.perf_counter() - t0) * 1000
        if hit is None:
            return None
        trace.cache_layer = "result"
        trace.outcome = "ok"
        trace.provider = str(hit.payload.get("provider", ""))
        trace.detail["cache_match"] = {"question": hit.question, "similarity": hit.similarity}
        trace.timings["total"] = (time.perf_counter() - t_start) * 1000
        answer = _answer_from_payload(text, hit.payload, trace.timings, trace.request_id)
        return dataclasses.replace(
            answer,
            cache="result",
            cache_match=CacheMatch(hit.question, hit.similarity),
            cache_entry=hit.entry_id,
        )

    async def _answer(
        self,
        text: str,
        kept: Sequence[ScoredChunk],
        trace: AskTrace,
        on_token: TokenCallback | None,
        on_quotes: QuotesCallback | None,
        skip_providers: Collection[str],
        notices: list[str],
    ) -> Answer:
        """Quotes first, the gate, then the model's answer checked against the passages."""
        timings = trace.timings
        t0 = time.perf_counter()
        quotes, evidence = await asyncio.to_thread(find_quotes, text, kept)
        timings["quotes"] = (time.perf_counter() - t0) * 1000
        if on_quotes is not None:
            on_quotes(quotes)
        features = await self._gate_features(text, kept, evidence)
        decision = gate.before(features)
        trace.detail["gate"] = {"reason": decision.reason, **features.to_json()}
        if not decision.call_model:
            notices.append(decision.reason[:1].upper() + decision.reason[1:] + ".")
            return self._abstention(text, kept, quotes, trace, notices, provider="gate")
        if "injection" in trace.detail:
            # A question that reads like instructions to a model never reaches one:
            # it is answered from the documents' own sentences (policy "warn").
            if not quotes:
                return self._abstention(text, kept, quotes, trace, notices, provider="quotes")
            trace.outcome, trace.provider = "ok", "quotes"
            base = Answer(
                question=text,
                text="",
                citations=(),
                provider="quotes",
                cache="embedding" if trace.cache_layer == "embedding" else "miss",
                degraded=False,
                timings_ms=timings,
                request_id=trace.request_id,
            )
            return self._quotes_answer(base, quotes, notices)

        answer = await self._generate(text, kept, trace, on_token, skip_providers, notices)
        if not answer.text:
            return dataclasses.replace(answer, quotes=quotes)
        t1 = time.perf_counter()
        checked = await asyncio.to_thread(
            check_answer,
            text,
            answer.text,
            kept,
            embed=self._retriever.sentence_encoder(),
            unsupported="drop" if self._settings.answer.unsupported == "drop" else "mark",
        )
        timings["check"] = (time.perf_counter() - t1) * 1000
        trace.detail["supported_share"] = round(checked.supported_share, 3)
        if checked.abstained:
            # The gate found evidence, yet the model says the passages hold no answer.
            # A small model says so wrongly: on both evaluation sets every such
            # "not found" was on an answerable question (Python docs 6 of 6, the frozen
            # handbook set 7 of 7; tests/bench/answers.py), and every true abstention
            # came from the gate. So the passages' best sentences are shown, marked
            # as such; only when no sentence relates to the question at all does
            # Archivist say the documents do not contain the answer.
            trace.detail["model_not_found"] = True
            if not quotes:
                # The quotes step reads terms only (milliseconds) and quotes only
                # strong evidence; a paraphrased question may share few words with
                # the sentence that answers it. The model has run anyway, so the
                # closest sentences are looked for by meaning too, and shown.
                quotes = await self._closest_sentences(text, kept, timings)
            if not quotes:
                trace.outcome = "not_found" if trace.outcome == "ok" else trace.outcome
                return self._model_abstention(text, kept, quotes, trace, notices, answer)
            if trace.outcome == "not_found":
                trace.outcome = "ok"
            notices.append(MODEL_NOT_FOUND_NOTICE)
            return self._quotes_answer(answer, quotes, notices)
        on_topic = not gate.off_topic(checked.citations, kept, evidence, text)
        if not on_topic:
            trace.detail["off_topic_answer"] = True
        supported = bool(checked.citations) and gate.after(checked.supported_share)
        if supported and (on_topic or not quotes):
            notice = answer.notice
            if not on_topic:
                # Its claims are in the passages it cites, but those share less of
                # the question than the best passage. With quotes, the quotes answer;
                # without (no passage holds strong evidence), the checked answer is
                # the best there is, said as such. Seen on the Python docs set
                # (tuning): a correct answer abstained for want of quotes.
                notices.append(OFF_TOPIC_NOTICE)
                notice = " ".join(notices)
            return dataclasses.replace(
                answer,
                text=checked.text,
                citations=checked.citations,
                sentences=checked.sentences,
                quotes=quotes,
                notice=notice,
            )
        # The model's answer is not in the passages: the quotes stay the answer.
        trace.detail["unsupported_answer"] = True
        invented = await asyncio.to_thread(gate.invented_names, answer.text, kept)
        if invented:
            # ... unless it names what no passage mentions (an option, a function):
            # answered from elsewhere, about something the documents lack. The quotes
            # are on the topic, not the answer: they are shown as the closest passages.
            trace.detail["invented_names"] = list(invented)
            notices.append(
                f"The model's answer names {', '.join(invented)}, which no passage mentions."
            )
            return self._model_abstention(text, kept, quotes, trace, notices, answer)
        if not quotes and checked.claims == 0:
            # It claimed nothing ("The council signed off for the trial."): no answer,
            # as when it says it found none, so the closest sentences are shown the
            # same way. An answer that claims what no passage says gets no such
            # second look: that is how a made-up answer reads, and it abstains.
            quotes = await self._closest_sentences(text, kept, timings)
            if quotes:
                notices.append(MODEL_NOT_FOUND_NOTICE)
                return self._quotes_answer(answer, quotes, notices)
        if not quotes:
            return self._abstention(text, kept, quotes, trace, notices, provider=answer.provider)
        notices.append(UNSUPPORTED_NOTICE)
        return self._quotes_answer(answer, quotes, notices)

    def _model_abstention(
        self,
        text: str,
        kept: Sequence[ScoredChunk],
        quotes: tuple[Citation, ...],
        trace: AskTrace,
        notices: list[str],
        answer: Answer,
    ) -> Answer:
        """An abstention after the model ran: it keeps how that call went."""
        return dataclasses.replace(
            self._abstention(text, kept, quotes, trace, notices, provider=answer.provider),
            degraded=answer.degraded,
            interrupted_by=answer.interrupted_by,
        )

    @staticmethod
    def _quotes_answer(answer: Answer, quotes: tuple[Citation, ...], notices: list[str]) -> Answer:
        """The passages' own sentences as the answer, in place of the model's words."""
        sentences = _quote_sentences(quotes)
        return dataclasses.replace(
            answer,
            text="\n\n".join(s.text for s in sentences),
            citations=quotes,
            sentences=sentences,
            quotes=quotes,
            notice=" ".join(notices),
        )

    async def _closest_sentences(
        self, text: str, kept: Sequence[ScoredChunk], timings: dict[str, float]
    ) -> tuple[Citation, ...]:
        """The passages' sentences closest to the question, by terms and (with a loaded
        model) by meaning, however weak; ``()`` when none shares anything with it."""
        if not kept:
            return ()
        t0 = time.perf_counter()
        quotes, _ = await asyncio.to_thread(
            find_quotes,
            text,
            kept,
            embed=self._retriever.sentence_encoder(),
            min_coverage=0.0,
            min_cosine=0.0,
        )
        timings["closest_sentences"] = (time.perf_counter() - t0) * 1000
        return quotes

    async def gate_features(self, text: str, kept: Sequence[ScoredChunk]) -> gate.GateFeatures:
        """What the gate decides on for ``text`` and its passages (also for benchmarks)."""
        _, evidence = await asyncio.to_thread(find_quotes, text, kept)
        return await self._gate_features(text, kept, evidence)

    async def _gate_features(
        self, text: str, kept: Sequence[ScoredChunk], evidence: QuoteEvidence
    ) -> gate.GateFeatures:
        unknown = await self._retriever.unknown_names(text)
        # Reading the passages' numbers and identifiers is CPU work: off the GUI loop.
        return await asyncio.to_thread(gate.features, text, evidence, kept, unknown)

    def _abstention(
        self,
        text: str,
        kept: Sequence[ScoredChunk],
        quotes: tuple[Citation, ...],
        trace: AskTrace,
        notices: list[str],
        *,
        provider: str,
    ) -> Answer:
        """ "The documents do not contain the answer", with the closest passages."""
        trace.outcome = "not_found"
        trace.provider = provider
        closest = quotes or tuple(
            Citation.of(i + 1, sc.chunk, sc.score) for i, sc in enumerate(kept[:3])
        )
        return Answer(
            question=text,
            text=NOT_FOUND,
            citations=(),
            provider=provider,
            cache="embedding" if trace.cache_layer == "embedding" else "miss",
            degraded=False,
            timings_ms=trace.timings,
            request_id=trace.request_id,
            notice=" ".join([*notices, ABSTAIN_NOTICE]) if closest else " ".join(notices) or None,
            quotes=closest,
            abstained=True,
        )

    async def _generate(
        self,
        text: str,
        kept: Sequence[ScoredChunk],
        trace: AskTrace,
        on_token: TokenCallback | None,
        skip_providers: Collection[str],
        notices: list[str],
    ) -> Answer:
        """Stream the provider chain's answer and attach its citations."""
        timings = trace.timings
        passages = tuple(
            ContextPassage(i + 1, sc.chunk.source, sc.chunk.page, sc.chunk.text)
            for i, sc in enumerate(kept)
        )
        request = GenerationRequest(question=text, passages=passages)
        t0 = time.perf_counter()
        pieces: list[str] = []
        provider = ""
        degraded = False
        first_token_ms: float | None = None
        interrupted_by: str | None = None
        router = self._router
        attempts: list[dict[str, Any]] = []
        async for event in router.stream(request, skip=skip_providers):
            if isinstance(event, Token):
                if first_token_ms is None:
                    first_token_ms = (time.perf_counter() - t0) * 1000
                pieces.append(event.text)
                if on_token is not None:
                    on_token(AnswerChunk(event.text, event.provider))
            elif isinstance(event, Done):
                provider = event.provider
                # With no language model configured the extractive answer is the
                # normal answer, not a degraded one.
                degraded = event.degraded and bool(router.names())
                if event.notice and router.names():
                    notices.append(event.notice)
            elif isinstance(event, MidStreamFailure):
                interrupted_by = event.provider  # Done carries the notice
            elif isinstance(event, Attempt):
                attempts.append(
                    {
                        "provider": event.provider,
                        "outcome": event.outcome,
                        "error": event.error,
                        "ms": round(event.elapsed_ms, 1),
                    }
                )
        timings["generate"] = (time.perf_counter() - t0) * 1000
        if first_token_ms is not None:
            timings["first_token"] = first_token_ms
        answer_text = "".join(pieces).strip()
        trace.provider = provider
        trace.outcome = (
            "degraded" if degraded else ("not_found" if answer_text.startswith(NOT_FOUND) else "ok")
        )
        trace.detail.update(
            {
                "attempts": attempts,
                "breakers": {snap.name: str(snap.state) for snap in router.health()},
            }
        )
        return Answer(
            question=text,
            text=answer_text,
            citations=(),
            provider=provider,
            cache="embedding" if trace.cache_layer == "embedding" else "miss",
            degraded=degraded,
            timings_ms=timings,
            request_id=trace.request_id,
            notice=" ".join(notices) or None,
            interrupted_by=interrupted_by,
        )

    def _without_injections(self, scored: Sequence[ScoredChunk]) -> list[ScoredChunk]:
        """The passages not flagged (at ingestion, or now if never scanned)."""
        kept = []
        for sc in scored:
            score = sc.chunk.injection_score
            if score is None:
                score = self._detector.scan(sc.chunk.text, source="document").score
            if self._detector.level_of(score) == "allow":
                kept.append(sc)
        return kept

    async def _cached_query_vector(
        self, text: str, trace: AskTrace, cache: CacheService | None
    ) -> FloatArray | None:
        """The query embedding: from layer 1 of the cache, else computed (and cached)."""
        model_id = self._retriever.embedding_model_id
        if model_id is None:
            return None
        if cache is not None:
            t0 = time.perf_counter()
            vec = await cache.get_embedding(model_id, text)
            if vec is not None:
                trace.timings["embed_query"] = (time.perf_counter() - t0) * 1000
                trace.cache_layer = "embedding"
                return np.asarray(vec, dtype=np.float32)
        vec = await self._retriever.query_vector(text, trace.timings, force=cache is not None)
        if vec is not None and cache is not None:
            await cache.put_embedding(model_id, text, vec)
        return vec

    def _record(self, trace: AskTrace) -> None:
        self.asks += 1
        detail = dict(trace.detail)
        detail["timings_ms"] = {k: round(v, 1) for k, v in trace.timings.items()}
        self._audit(
            "ask",
            trace.outcome,
            request_id=trace.request_id,
            session=trace.session,
            provider=trace.provider or None,
            cache_layer=trace.cache_layer,
            latency_ms=trace.timings.get("total", 0.0),
            question=trace.question,
            detail=detail,
        )
        log.info(
            "ask %s",
            trace.outcome,
            extra={
                "provider": trace.provider,
                "cache": trace.cache_layer,
                "timings_ms": detail["timings_ms"],
            },
        )


def _quote_sentences(quotes: Sequence[Citation]) -> tuple[AnswerSentence, ...]:
    """The quotes as an answer: each in its own paragraph with its marker."""
    out = []
    pos = 0
    for q in quotes:
        line = f"{' '.join(q.quote.split())} [{q.marker}]"
        out.append(AnswerSentence(line, pos, pos + len(line), True, (q.marker,), 1.0))
        pos += len(line) + 2
    return tuple(out)
