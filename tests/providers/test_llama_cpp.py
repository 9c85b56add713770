"""The local llama.cpp provider: threading, cancellation, timeouts, and the real model.

The first half drives the provider with ``SlowModel``, a small stand-in with
real behaviour (it generates tokens in the worker thread at a set pace and
records what it was asked), so the thread/queue/timeout machinery is tested
in milliseconds. The second half (``slow``) loads the real Qwen2.5-Coder 0.5B
GGUF, in process on the installed runtime (the prebuilt one unless
``ARCHIVIST_LLM_RUNTIME=source``) and behind llama.cpp's own OpenAI-compatible
server in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import models
from core.breaker import CircuitBreaker
from core.config import BreakerSettings, ProviderSettings
from core.errors import ProviderRejected, ProviderUnavailable
from core.providers.extractive import ExtractiveProvider
from core.providers.llama_cpp import (
    RUNTIME_MISSING,
    LlamaCppProvider,
    LlamaCppPythonModel,
    build_local_messages,
    local_model_available,
    pick_runtime,
)
from core.providers.openai import OpenAIProvider, build_messages
from core.providers.router import Done, MidStreamFailure, ProviderRouter, RouterEvent, Token
from core.types import ContextPassage, GenerationRequest
from tests.conftest import in_ci

REQUEST = GenerationRequest(
    question="What is the aperture of the refracting telescope?",
    passages=(
        ContextPassage(
            1,
            "/docs/telescope.html",
            None,
            "The refracting telescope has an aperture of 240 millimetres. "
            "Viewing nights are held on the first Friday of each month.",
        ),
        ContextPassage(
            2,
            "/docs/ferry.pdf",
            2,
            "A return ticket to Gull Island costs eleven euros. "
            "Bicycles travel free of charge on the ferry.",
        ),
    ),
    max_tokens=96,
    temperature=0.0,
)


def settings(**kw: Any) -> ProviderSettings:
    values: dict[str, Any] = {
        "name": "local",
        "kind": "llama_cpp",
        "timeout_s": 10.0,
        "first_token_timeout_s": 5.0,
    }
    values.update(kw)
    return ProviderSettings(**values)


# --------------------------------------------------------------------------- a stand-in model


class SlowModel:
    """Generates ``tokens`` in the calling (worker) thread, ``delay_s`` apart."""

    def __init__(
        self,
        tokens: int = 1000,
        delay_s: float = 0.005,
        first_delay_s: float = 0.0,
        error: BaseException | None = None,
        error_after: int = 0,
    ) -> None:
        self.tokens = tokens
        self.delay_s = delay_s
        self.first_delay_s = first_delay_s
        self.error = error
        self.error_after = error_after
        self.calls: list[dict[str, Any]] = []
        self.generated = 0
        self.running = 0
        self.max_running = 0
        self.finished = threading.Event()
        self.closed = False
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def create_chat_completion(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.calls.append(kwargs)
        return self._chunks()

    def _chunks(self) -> Iterator[dict[str, Any]]:
        self.finished.clear()
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.threads.add(threading.current_thread().name)
        try:
            yield {"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]}
            time.sleep(self.first_delay_s)
            for i in range(self.tokens):
                if self.error is not None and i == self.error_after:
                    raise self.error
                time.sleep(self.delay_s)
                self.generated += 1
                yield {"choices": [{"delta": {"content": f"t{i} "}, "finish_reason": None}]}
            yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}
        finally:
            with self._lock:
                self.running -= 1
            self.finished.set()

    def close(self) -> None:
        self.closed = True


def provider_with(model: SlowModel, tmp_path: Path, **kw: Any) -> LlamaCppProvider:
    gguf = tmp_path / "stand-in.gguf"
    gguf.write_bytes(b"GGUF")
    return LlamaCppProvider(
        settings(model=str(gguf), **kw), tmp_path, loader=lambda _: LlamaCppPythonModel(model)
    )


@pytest.fixture
async def slow_model(tmp_path: Path) -> AsyncIterator[tuple[LlamaCppProvider, SlowModel]]:
    model = SlowModel()
    provider = provider_with(model, tmp_path)
    yield provider, model
    await provider.aclose()


async def collect(stream: AsyncIterator[str]) -> str:
    return "".join([piece async for piece in stream])


async def test_tokens_stream_from_the_worker_thread_with_the_shared_grounded_prompt(
    tmp_path: Path,
) -> None:
    model = SlowModel(tokens=5, delay_s=0.0)
    provider = provider_with(model, tmp_path, max_tokens=64)
    try:
        text = await collect(provider.stream(REQUEST))
    finally:
        await provider.aclose()
    assert text == "t0 t1 t2 t3 t4 "
    (call,) = model.calls
    messages = call["messages"]
    assert messages == build_local_messages(REQUEST)
    # The shared grounded prompt: the same rules and the same passage block.
    assert messages[0] == build_messages(REQUEST)[0]
    assert messages[-1] == build_messages(REQUEST)[1]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert call["stream"] is True
    assert call["max_tokens"] == 64  # the smaller of the request's and the provider's limit
    assert call["temperature"] == 0.0
    assert model.threads and all(t.startswith("llama-local") for t in model.threads)
    assert threading.current_thread().name not in model.threads


async def test_leaving_the_stream_early_stops_generation(
    slow_model: tuple[LlamaCppProvider, SlowModel],
) -> None:
    provider, model = slow_model
    pieces = []
    async with contextlib.aclosing(provider.stream(REQUEST)) as stream:
        async for piece in stream:
            pieces.append(piece)
            if len(pieces) == 3:
                break
    assert await asyncio.to_thread(model.finished.wait, 5.0)
    assert model.generated < 20  # of 1000: stopped within a token or two
    assert await _until_idle(provider)


async def test_cancelling_the_consumer_task_stops_generation(
    slow_model: tuple[LlamaCppProvider, SlowModel],
) -> None:
    provider, model = slow_model
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in provider.stream(REQUEST):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(model.finished.wait, 5.0)
    assert model.generated < 50
    assert await _until_idle(provider)


async def _until_idle(provider: LlamaCppProvider) -> bool:
    for _ in range(500):
        if not provider.busy:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_one_answer_at_a_time(tmp_path: Path) -> None:
    model = SlowModel(tokens=10, delay_s=0.002)
    provider = provider_with(model, tmp_path)
    try:
        texts = await asyncio.gather(*(collect(provider.stream(REQUEST)) for _ in range(3)))
    finally:
        await provider.aclose()
    assert all(t.startswith("t0 ") and t.endswith("t9 ") for t in texts)
    assert model.max_running == 1


async def test_the_next_answer_waits_for_a_cancelled_one_to_really_stop(tmp_path: Path) -> None:
    model = SlowModel(tokens=1000, delay_s=0.005)
    provider = provider_with(model, tmp_path)
    try:
        async with contextlib.aclosing(provider.stream(REQUEST)) as stream:
            await anext(stream)
        model.tokens = 3
        assert await collect(provider.stream(REQUEST)) == "t0 t1 t2 "
    finally:
        await provider.aclose()
    assert model.max_running == 1


async def test_no_first_token_in_time_is_unavailable(tmp_path: Path) -> None:
    model = SlowModel(tokens=3, first_delay_s=1.0)
    provider = provider_with(model, tmp_path, first_token_timeout_s=0.1)
    try:
        with pytest.raises(ProviderUnavailable, match=r"no answer within 0\.1 s") as info:
            await collect(provider.stream(REQUEST))
    finally:
        await provider.aclose()
    assert info.value.provider == "local"


async def test_an_answer_past_the_total_timeout_is_unavailable(tmp_path: Path) -> None:
    model = SlowModel(tokens=1000, delay_s=0.01)
    provider = provider_with(model, tmp_path, timeout_s=0.3, first_token_timeout_s=0.2)
    pieces: list[str] = []
    try:
        with pytest.raises(ProviderUnavailable, match=r"took longer than 0\.3 s"):
            async for piece in provider.stream(REQUEST):
                pieces.append(piece)
    finally:
        await provider.aclose()
    assert pieces  # it did start answering
    assert model.generated < 1000


async def test_a_crash_mid_answer_is_unavailable(tmp_path: Path) -> None:
    model = SlowModel(tokens=10, error=RuntimeError("llama_decode returned -3"), error_after=2)
    provider = provider_with(model, tmp_path)
    pieces: list[str] = []
    try:
        with pytest.raises(ProviderUnavailable, match="llama_decode returned -3"):
            async for piece in provider.stream(REQUEST):
                pieces.append(piece)
    finally:
        await provider.aclose()
    assert pieces == ["t0 ", "t1 "]


async def test_a_prompt_too_long_for_the_context_is_rejected(tmp_path: Path) -> None:
    error = ValueError("Requested tokens (5000) exceed context window of 4096")
    provider = provider_with(SlowModel(error=error), tmp_path)
    try:
        with pytest.raises(ProviderRejected, match="too long"):
            await collect(provider.stream(REQUEST))
    finally:
        await provider.aclose()


async def test_a_missing_model_file_is_unavailable(tmp_path: Path) -> None:
    provider = LlamaCppProvider(
        settings(model=str(tmp_path / "missing.gguf")),
        tmp_path,
        loader=lambda _: LlamaCppPythonModel(SlowModel()),
    )
    try:
        with pytest.raises(ProviderUnavailable, match="does not exist") as info:
            await collect(provider.stream(REQUEST))
    finally:
        await provider.aclose()
    assert info.value.provider == "local"


async def test_a_missing_runtime_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither runtime importable (None in sys.modules makes the import fail).
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    monkeypatch.setitem(sys.modules, "xllamacpp", None)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    provider = LlamaCppProvider(settings(model=str(gguf)), tmp_path)
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await collect(provider.stream(REQUEST))
    finally:
        await provider.aclose()
    assert info.value.message == RUNTIME_MISSING
    assert local_model_available(tmp_path, str(gguf)) is None
    assert local_model_available(tmp_path, str(gguf), require_runtime=False) == str(gguf)


async def test_aclose_frees_the_model_and_refuses_new_answers(
    slow_model: tuple[LlamaCppProvider, SlowModel],
) -> None:
    provider, model = slow_model
    await provider.start()
    await provider.aclose()
    assert model.closed
    with pytest.raises(ProviderUnavailable, match="closed"):
        await collect(provider.stream(REQUEST))


async def test_aclose_stops_an_answer_in_progress(
    slow_model: tuple[LlamaCppProvider, SlowModel],
) -> None:
    provider, model = slow_model
    stream = provider.stream(REQUEST)
    await anext(stream)
    await provider.aclose()  # waits for the worker, which stops at the next token
    assert model.finished.is_set()
    assert model.closed
    await stream.aclose()


def test_local_model_available_prefers_a_configured_file(tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    assert local_model_available(tmp_path, str(gguf), require_runtime=False) == str(gguf)
    fallback = local_model_available(tmp_path, str(tmp_path / "gone.gguf"), require_runtime=False)
    assert fallback in (None, models.QWEN_05B, models.QWEN_15B)


# --------------------------------------------------------------------------- the real model


def _require(condition: bool, why: str) -> None:
    if not condition:
        if in_ci():
            pytest.fail(f"{why} (the CI installs the local-llm extra)")
        pytest.skip(why)


@pytest.fixture(scope="session")
def real_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real 0.5B model, assembled from its part packages and verified once."""
    _require(
        models.installed(models.QWEN_05B, tmp_path_factory.getbasetemp()),
        "the 0.5B part packages are not installed",
    )
    _require(pick_runtime() is not None, "no llama.cpp runtime is installed")
    return models.resolve(models.QWEN_05B, tmp_path_factory.mktemp("models"))


@pytest.fixture
async def real_provider(real_gguf: Path, tmp_path: Path) -> AsyncIterator[LlamaCppProvider]:
    provider = LlamaCppProvider(
        settings(model=str(real_gguf), timeout_s=120.0, first_token_timeout_s=60.0), tmp_path
    )
    yield provider
    await provider.aclose()


@pytest.mark.slow
async def test_the_real_model_answers_from_the_passage_and_cites_it(
    real_provider: LlamaCppProvider,
) -> None:
    text = await collect(real_provider.stream(REQUEST))
    assert "240" in text, text
    assert "[1]" in text, text


@pytest.mark.slow
async def test_the_real_model_stops_when_the_consumer_leaves(
    real_provider: LlamaCppProvider,
) -> None:
    long_request = GenerationRequest(
        question="Describe every passage in detail, sentence by sentence.",
        passages=REQUEST.passages,
        max_tokens=400,
        temperature=0.0,
    )
    async with contextlib.aclosing(real_provider.stream(long_request)) as stream:
        for _ in range(3):
            await anext(stream)
    assert real_provider.busy  # the worker is finishing its current token
    assert await _until_idle(real_provider)
    # The model is free again and answers the next question in full.
    assert "240" in await collect(real_provider.stream(REQUEST))


@pytest.mark.slow
async def test_the_event_loop_keeps_running_while_the_real_model_generates(
    real_provider: LlamaCppProvider,
) -> None:
    await real_provider.start()  # loading is off the loop too, but measure generation
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    started = asyncio.get_running_loop().time()
    try:
        text = await collect(real_provider.stream(REQUEST))
    finally:
        stop.set()
        await task
    total = asyncio.get_running_loop().time() - started
    assert text
    # A loop blocked by inference would tick only once or twice, with one gap as
    # long as the whole answer. A busy machine may delay single ticks, so this
    # checks the shape (many ticks, no gap near the whole answer), not a latency.
    assert len(gaps) > 20
    assert max(gaps) < max(0.5, total / 3), (
        f"longest pause {max(gaps) * 1000:.0f} ms of an answer of {total * 1000:.0f} ms"
    )


# --------------------------------------------------------------------------- llama.cpp's server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def llama_server(real_gguf: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.llama_server", str(real_gguf), str(port)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the llama.cpp server exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the llama.cpp server did not start within 120 s")
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


async def _run(router: ProviderRouter, request: GenerationRequest) -> list[RouterEvent]:
    return [event async for event in router.stream(request)]


@pytest.mark.slow
async def test_a_killed_llama_server_fails_over_to_the_extractive_answer(
    llama_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, proc = llama_server
    primary = OpenAIProvider(
        ProviderSettings(
            name="llama-server",
            kind="openai",
            base_url=url,
            timeout_s=60.0,
            connect_timeout_s=2.0,
            first_token_timeout_s=30.0,
        ),
        api_key="",
    )
    breaker = CircuitBreaker("llama-server", BreakerSettings(failure_threshold=3))
    router = ProviderRouter(
        [(primary, breaker)], ExtractiveProvider(), max_retries=1, backoff_base_s=0.05
    )
    try:
        # 1. The server answers, grounded and cited.
        events = await _run(router, REQUEST)
        done = events[-1]
        assert isinstance(done, Done) and done.provider == "llama-server" and not done.degraded
        text = "".join(e.text for e in events if isinstance(e, Token))
        assert "240" in text, text  # (OpenAIProvider sends the prompt without the example)

        # 2. The server dies mid-answer: the answer is cut off visibly.
        cut: list[RouterEvent] = []
        async for event in router.stream(REQUEST):
            cut.append(event)
            if isinstance(event, Token) and proc.poll() is None:
                proc.kill()
        assert any(isinstance(e, MidStreamFailure) for e in cut)
        assert isinstance(cut[-1], Done) and cut[-1].degraded

        # 3. The next question fails over to the extractive answer without hanging.
        loop = asyncio.get_running_loop()
        started = loop.time()
        events = await _run(router, REQUEST)
        elapsed = loop.time() - started
        done = events[-1]
        assert isinstance(done, Done)
        assert done.provider == "extractive" and done.degraded
        assert done.notice and "llama-server" in done.notice
        text = "".join(e.text for e in events if isinstance(e, Token))
        assert "240 millimetres" in text and "[1]" in text
        assert elapsed < primary.settings.first_token_timeout_s  # refused, not timed out
    finally:
        await router.aclose()


async def test_answers_waiting_their_turn_end_cleanly_when_the_provider_closes(
    slow_model: tuple[LlamaCppProvider, SlowModel],
) -> None:
    provider, model = slow_model
    first = provider.stream(REQUEST)
    await anext(first)
    waiting = asyncio.create_task(collect(provider.stream(REQUEST)))
    await asyncio.sleep(0.05)  # let it queue behind the first answer
    await provider.aclose()
    with pytest.raises(ProviderUnavailable, match="closed"):
        await waiting
    await first.aclose()
    assert model.max_running == 1
