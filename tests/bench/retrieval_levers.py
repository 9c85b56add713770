"""Retrieval levers that need no re-index, measured on the product's own index.

    HF_HUB_OFFLINE=1 .venv/bin/python tests/bench/retrieval_levers.py \
        [--set python|handbook] [--home DIR] [--levers base,rrf-k-20,...] \
        [--hyde-model FILE.gguf] [--json]

Each lever changes one step of the ranking ``SearchIndex.search`` does (keyword
list, vector list, their fusion, the page ranking) and is scored as
``archivist eval retrieval`` scores it: page-level nDCG@10 over the set's
answerable questions, overall and by kind. ``base`` is the product's own ranking;
every other row differs from it in one lever. The knowledge base (``--home``, by
default the one tests/bench/retrieval_eval.py uses) is copied to a scratch
folder first, so the run never changes it.

The Python docs set is the tuning set: try levers there. Run ``--set handbook``
only to confirm a lever chosen on Python (that set is frozen; see
tests/eval/README.md).

Levers:

- ``candidates-N``: fuse the top N of each list, not ``retrieval.candidates``;
- ``rrf-k-N``: the RRF constant;
- ``vector-weight-W``: the vector list's weight in RRF;
- ``bm25-k1-K-b-B``, ``bm25-no-headings``: the keyword index rebuilt with other
  BM25 parameters, or without the heading path in each passage's text;
- ``bm25-prf``: pseudo-relevance feedback, the ten rarest terms that at least two of
  the keyword list's five best passages share, searched again and fused at 0.5;
- ``rocchio``: the query vector moved halfway towards the mean of its five best
  passages' vectors, searched again;
- ``page-lists``: two page-level lists (BM25 over each page's whole text, the
  page's mean passage vector) added to every passage's fused score;
- ``page-fusion``: each list turned into a page ranking first, RRF over pages;
- ``windows``: each of the 30 best fused passages split into 80-word windows
  (stride 40) embedded with their headings; their best cosine is a third list;
- ``hyde``: with ``--hyde-model``, the local model writes a short hypothetical
  answer (greedy, 96 tokens); the keyword list searches the question three times
  plus that text, and the vector list the question and that text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from core.config import load_settings  # noqa: E402
from core.db import store  # noqa: E402
from core.evaluation import EvalQuestion, _pages, load_questions  # noqa: E402
from core.retrieval.bm25 import BM25Index  # noqa: E402
from core.retrieval.fusion import reciprocal_rank_fusion  # noqa: E402
from core.retrieval.metrics import ndcg_at_k  # noqa: E402
from core.retrieval.search import Hit, keyword_text  # noqa: E402
from core.retrieval.text import embedding_text  # noqa: E402
from tests.bench.retrieval_eval import SETS  # noqa: E402
from tests.eval.corpus import find_corpus  # noqa: E402

DEFAULT_LEVERS = (
    "base,candidates-100,candidates-200,rrf-k-20,rrf-k-100,vector-weight-1.5,"
    "bm25-k1-1.2-b-0.75,bm25-k1-0.9-b-0.4,bm25-no-headings,bm25-prf,rocchio,"
    "page-lists,page-fusion,windows"
)
DEPTH = 200  # every list is fetched this deep once; levers take what they need
HYDE_SYSTEM = (
    "You write a short passage, as it could appear in the documentation of the software"
    " or system the question is about, that answers the question. Name the exact"
    " commands, functions, options, files or terms involved. Two to four sentences,"
    " no preamble."
)
_WORDS = re.compile(r"\S+")

Ranked = list[tuple[int, float]]


@dataclass
class Probe:
    question: EvalQuestion
    tokens: list[str]
    vector: np.ndarray
    bm25: Ranked
    vectors: Ranked
    extra: dict[str, Any] = field(default_factory=dict)


def rrf(
    lists: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None
) -> Ranked:
    return reciprocal_rank_fusion([list(x) for x in lists], k=k, weights=weights)


def ids(ranked: Ranked, n: int) -> list[int]:
    return [c for c, _ in ranked[:n]]


def windows(text: str, size: int = 80, stride: int = 40) -> list[str]:
    words = _WORDS.findall(text)
    if len(words) <= size:
        return [" ".join(words)]
    out = []
    for start in range(0, len(words), stride):
        out.append(" ".join(words[start : start + size]))
        if start + size >= len(words):
            break
    return out


class Bench:
    def __init__(self, services: Any, index: Any, corpus: Path) -> None:
        self.services = services
        self.retriever = services._retriever
        self.index = index
        self.corpus = corpus
        self.n = index._settings.candidates
        self.chunk_doc: dict[int, int] = dict(index._chunk_doc)
        self._tokens: dict[int, tuple[list[str], list[str]]] | None = None

    # ------------------------------------------------------------------ helpers
    def chunk_tokens(self) -> dict[int, tuple[list[str], list[str]]]:
        """Each passage's keyword tokens, with and without its heading path."""
        if self._tokens is None:
            analyzer = self.index.analyzer
            out: dict[int, tuple[list[str], list[str]]] = {}
            with self.services.engine.connect() as conn:
                for batch in store.iter_chunk_texts(conn):
                    for cid, text, heading in batch:
                        if cid in self.chunk_doc:
                            out[cid] = (
                                analyzer.tokens(keyword_text(text, heading)),
                                analyzer.tokens(text),
                            )
            self._tokens = out
        return self._tokens

    def bm25_index(self, k1: float, b: float, headings: bool = True) -> BM25Index:
        tokens = self.chunk_tokens()
        chunk_ids = sorted(tokens)
        index = BM25Index(k1=k1, b=b)
        index.add(chunk_ids, [tokens[c][0 if headings else 1] for c in chunk_ids])
        return index

    def pages(self, ranked: Sequence[int]) -> list[int]:
        seen: set[int] = set()
        out = []
        for cid in ranked:
            doc = self.chunk_doc.get(cid, -cid)
            if doc not in seen:
                seen.add(doc)
                out.append(doc)
        return out

    def score(self, probe: Probe, fused: Ranked) -> float:
        """The product's page ranking and diversity cap, then page-level nDCG@10."""
        ranked = self.index._diversify(self.index._by_page(fused, single_list=False), 10)
        hits = [Hit(c, s, None, None, None, None, None) for c, s in ranked[:10]]
        chunks = self.retriever._hydrate(hits)
        return ndcg_at_k(_pages(chunks, self.corpus), set(probe.question.relevant), 10)

    def base(self, probe: Probe, n: int | None = None, **kw: Any) -> Ranked:
        n = n or self.n
        return rrf([ids(probe.bm25, n), ids(probe.vectors, n)], **kw)

    # ------------------------------------------------------------------ levers
    def lever(self, name: str) -> Callable[[Probe], Ranked]:
        index = self.index
        n = self.n
        if name == "base":
            return self.base
        if m := re.fullmatch(r"candidates-(\d+)", name):
            return lambda p: self.base(p, n=int(m.group(1)))
        if m := re.fullmatch(r"rrf-k-(\d+)", name):
            return lambda p: self.base(p, k=int(m.group(1)))
        if m := re.fullmatch(r"vector-weight-([\d.]+)", name):
            return lambda p: self.base(p, weights=[1.0, float(m.group(1))])
        if m := re.fullmatch(r"bm25-k1-([\d.]+)-b-([\d.]+)", name):
            other = self.bm25_index(float(m.group(1)), float(m.group(2)))
            return lambda p: rrf([ids(other.search(p.tokens, n), n), ids(p.vectors, n)])
        if name == "bm25-no-headings":
            plain = self.bm25_index(index._settings.bm25_k1, index._settings.bm25_b, False)
            return lambda p: rrf([ids(plain.search(p.tokens, n), n), ids(p.vectors, n)])
        if name == "bm25-prf":
            return self.bm25_prf
        if name == "rocchio":
            return self.rocchio
        if name == "page-lists":
            return self.page_lists()
        if name == "page-fusion":
            return self.page_fusion
        if name == "windows":
            return self.windows_list
        if name == "hyde":
            return self.hyde
        raise SystemExit(f"unknown lever {name!r}")

    def bm25_prf(self, p: Probe) -> Ranked:
        tokens = self.chunk_tokens()
        counts: dict[str, int] = {}
        for cid in ids(p.bm25, 5):
            for term in set(tokens.get(cid, ((), ()))[0]):
                counts[term] = counts.get(term, 0) + 1
        asked = set(p.tokens)
        bm25 = self.index._bm25
        ranked = sorted(
            ((c * bm25.idf(t), t) for t, c in counts.items() if t not in asked and c >= 2),
            reverse=True,
        )
        extra = [t for _, t in ranked[:10]]
        if not extra:
            return self.base(p)
        again = bm25.search(p.tokens + extra, self.n)
        keyword = rrf([ids(p.bm25, self.n), ids(again, self.n)], weights=[1.0, 0.5])
        return rrf([ids(keyword, self.n), ids(p.vectors, self.n)])

    def rocchio(self, p: Probe) -> Ranked:
        vectors = self.index._vectors
        top = [v for v in (vectors.get(c) for c in ids(p.vectors, 5)) if v is not None]
        if not top:
            return self.base(p)
        moved = p.vector + 0.5 * np.mean(top, axis=0)
        moved = (moved / np.linalg.norm(moved)).astype(np.float32)
        return rrf([ids(p.bm25, self.n), ids(vectors.search(moved, self.n), self.n)])

    def page_lists(self) -> Callable[[Probe], Ranked]:
        tokens = self.chunk_tokens()
        page_tokens: dict[int, list[str]] = {}
        sums: dict[int, np.ndarray] = {}
        vectors = self.index._vectors
        for cid, doc in self.chunk_doc.items():
            page_tokens.setdefault(doc, []).extend(tokens.get(cid, ((), ()))[0])
            v = vectors.get(cid)
            if v is not None:
                sums[doc] = sums.get(doc, 0) + v
        docs = sorted(page_tokens)
        page_bm25 = BM25Index(k1=self.index._settings.bm25_k1, b=self.index._settings.bm25_b)
        page_bm25.add(docs, [page_tokens[d] for d in docs])
        vec_docs = sorted(sums)
        matrix = np.stack([sums[d] / np.linalg.norm(sums[d]) for d in vec_docs]).astype(np.float32)

        def lever(p: Probe) -> Ranked:
            by_vector = np.argsort(-(matrix @ p.vector))[:20]
            lists = [ids(page_bm25.search(p.tokens, 20), 20), [vec_docs[i] for i in by_vector]]
            page_score = dict(rrf(lists, weights=[0.5, 0.5]))
            fused = [
                (c, s + page_score.get(self.chunk_doc.get(c, -c), 0.0)) for c, s in self.base(p)
            ]
            return sorted(fused, key=lambda t: -t[1])

        return lever

    def page_fusion(self, p: Probe) -> Ranked:
        fused = self.base(p)
        page_score = dict(
            rrf([self.pages(ids(p.bm25, self.n)), self.pages(ids(p.vectors, self.n))])
        )
        best: dict[int, tuple[int, float]] = {}
        for cid, s in fused:
            best.setdefault(self.chunk_doc.get(cid, -cid), (cid, s))
        leaders = [best[d] for d in sorted(best, key=lambda d: -page_score.get(d, 0.0))]
        lead = {c for c, _ in leaders}
        # scores fall with the page order, so the product's page ranking keeps it
        out = [(c, 1.0 / (i + 1)) for i, (c, _) in enumerate(leaders)]
        return out + [(c, 0.0) for c, _ in fused if c not in lead]

    def windows_list(self, p: Probe) -> Ranked:
        fused = self.base(p)
        best: dict[int, float] = p.extra.get("windows", {})
        third = sorted(best, key=lambda c: -best[c])
        return (
            rrf([ids(p.bm25, self.n), ids(p.vectors, self.n), third], weights=[1.0, 1.0, 0.5])
            if third
            else fused
        )

    def hyde(self, p: Probe) -> Ranked:
        text = p.extra.get("hyde", "")
        if not text:
            return self.base(p)
        tokens = self.index.analyzer.tokens(text)
        keyword = self.index._bm25.search(p.tokens * 3 + tokens, self.n)
        vector = self.index._vectors.search(p.extra["hyde_vector"], self.n)
        return rrf([ids(keyword, self.n), ids(vector, self.n)])

    # ------------------------------------------------------------------ set-up
    async def probes(self, questions: Sequence[EvalQuestion]) -> list[Probe]:
        out = []
        for q in questions:
            vector = await self.retriever.query_vector(q.question, {})
            assert vector is not None, "the knowledge base needs vectors"
            vector = np.asarray(vector, dtype=np.float32)
            tokens = self.index.analyzer.tokens(q.question)
            out.append(
                Probe(
                    q,
                    tokens,
                    vector,
                    self.index._bm25.search(tokens, DEPTH),
                    self.index._vectors.search(vector, DEPTH),
                )
            )
        return out

    def add_windows(self, probes: Sequence[Probe]) -> None:
        """Embed the windows of each probe's 30 best fused passages (headings first)."""
        wanted = {c for p in probes for c in ids(self.base(p), 30)}
        chunks = self.retriever._hydrate(
            [Hit(c, 0.0, None, None, None, None, None) for c in wanted]
        )
        texts, owners = [], []
        for sc in chunks:
            for w in windows(sc.chunk.text):
                texts.append(embedding_text(w, sc.chunk.heading_path))
                owners.append(sc.chunk.id)
        matrix = self.retriever._embedder.encode(texts, batch_size=64)
        rows: dict[int, list[np.ndarray]] = {}
        for row, cid in zip(matrix, owners, strict=True):
            rows.setdefault(cid, []).append(row)
        stacked = {c: np.stack(r) for c, r in rows.items()}
        for p in probes:
            cands = [c for c in ids(self.base(p), 30) if c in stacked]
            p.extra["windows"] = {c: float(np.max(stacked[c] @ p.vector)) for c in cands}

    async def add_hyde(self, probes: Sequence[Probe], model_path: Path) -> None:
        from core.providers.llama_cpp import XLlamaCppModel

        model = XLlamaCppModel.load(model_path, 2048, 2)
        try:
            for p in probes:
                parts: list[str] = []
                messages = [
                    {"role": "system", "content": HYDE_SYSTEM},
                    {"role": "user", "content": p.question.question},
                ]
                model.chat(
                    messages,
                    max_tokens=96,
                    temperature=0.0,
                    on_text=parts.append,
                    should_stop=lambda: False,
                )
                p.extra["hyde"] = "".join(parts).strip()
                both = p.question.question + "\n" + p.extra["hyde"]
                vector = await self.retriever.query_vector(both, {})
                p.extra["hyde_vector"] = np.asarray(vector, dtype=np.float32)
        finally:
            model.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    questions_file, corpus_name, default_home = SETS[args.set]
    home = args.home or default_home
    if not (home / "archivist.db").exists():
        raise SystemExit(f"{home} holds no knowledge base: build it with retrieval_eval.py first")
    corpus = find_corpus(corpus_name).resolve()
    levers = [x for x in args.levers.split(",") if x]
    if args.hyde_model and "hyde" not in levers:
        levers.append("hyde")
    scratch = Path(tempfile.mkdtemp(prefix="archivist-levers-"))
    try:
        copy = scratch / "home"
        shutil.copytree(home, copy, ignore=shutil.ignore_patterns("logs"))
        from core.services import Services

        env = {"ARCHIVIST_HOME": str(copy), "ARCHIVIST_LOCAL_MODEL": "off"}
        services = Services(load_settings(None, env=env))
        await services.start(warm_models=True)
        try:
            index = await services._retriever.index()
            bench = Bench(services, index, corpus)
            probes = await bench.probes([q for q in load_questions(questions_file) if q.relevant])
            if "windows" in levers:
                bench.add_windows(probes)
            if "hyde" in levers:
                if not args.hyde_model:
                    raise SystemExit("the hyde lever needs --hyde-model FILE.gguf")
                await bench.add_hyde(probes, args.hyde_model)
            rows = []
            for name in levers:
                rank = bench.lever(name)
                scores: dict[str, list[float]] = {}
                overall = []
                for p in probes:
                    s = bench.score(p, rank(p))
                    overall.append(s)
                    scores.setdefault(p.question.kind, []).append(s)
                rows.append(
                    {
                        "lever": name,
                        "ndcg@10": round(statistics.fmean(overall), 4),
                        "by_kind": {
                            k: round(statistics.fmean(v), 4) for k, v in sorted(scores.items())
                        },
                    }
                )
                if not args.json:
                    print(f"{name:24} {rows[-1]['ndcg@10']:.4f}  {rows[-1]['by_kind']}", flush=True)
        finally:
            await services.aclose()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"set": args.set, "home": str(home), "scored": len(probes), "levers": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS), default="python")
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--levers", default=DEFAULT_LEVERS)
    parser.add_argument("--hyde-model", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
