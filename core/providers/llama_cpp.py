"""The local, in-process LLM: a GGUF model run by llama.cpp.

The model file comes from the catalog (``core.models``): ``settings.model`` is a
catalog name or a ``.gguf`` path (empty: the default 0.5B model). It is loaded
on first use, or by ``start()``, in the provider's own worker thread.

Two llama.cpp runtimes can run it, behind one seam (``ChatModel``):

* xllamacpp, a prebuilt wheel (AVX2, no dependencies): the default, since it
  needs no compiler and, at the provider's two threads, answers as fast as a
  build for this CPU (tests/bench/llm_runtimes.py, 2026-12-01, 0.5B, six
  interleaved rounds at load average 2.5: median first token 4.6 s for both,
  17.1 vs 17.2 tok/s; the 1.5B figures are in README);
* llama-cpp-python, built from source by pip (cmake + a C++ compiler), for
  those who build it on purpose (``ARCHIVIST_LLM_RUNTIME=source`` at set-up).

``pick_runtime`` uses xllamacpp when it is importable, else llama-cpp-python,
else none (the local model is unavailable); ``ARCHIVIST_LLM_RUNTIME=source`` puts
llama-cpp-python first. Both get the same messages, chat template (the GGUF's own),
sampling, stop rules (the model's end-of-generation tokens), context size and
threads, and stream through the same callback; the runtime in use is named in
health and "why this answer" (``LlamaCppProvider.backend``).

Generation runs in that same single worker thread, so the event loop (the GUI
thread under qasync) is never blocked and only one answer is generated at a
time. Tokens reach the loop through an ``asyncio.Queue`` fed with
``loop.call_soon_threadsafe``. When the consumer stops iterating or its task is
cancelled, a ``threading.Event`` tells the worker to stop before the next token.

Deadlines (from ``ProviderSettings``) start once the model is loaded: the
first-token timeout covers waiting for a previous answer to finish and the
prompt's prefill; the total timeout bounds the whole answer. Loading has its
own bound (``timeout_s``); a load that overruns keeps going in the background
and the next question reuses it.

Failures map onto the provider error tree: a missing runtime, a missing or
corrupt model, a load failure, a timeout or a crash mid-answer raise
``ProviderUnavailable`` (the router fails over); a prompt too long for the
context window raises ``ProviderRejected``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from core import models
from core.config import ProviderSettings
from core.errors import ModelError, ProviderRejected, ProviderUnavailable
from core.providers.openai import PROMPT_VERSION, build_messages
from core.types import ContextPassage, GenerationRequest

log = logging.getLogger(__name__)

RUNTIME_MISSING = (
    "the local model runtime is not installed (packaging/install-local-model.sh, or "
    "pip install 'archivist[local-llm]')"
)

N_CTX = 4096
N_THREADS = 2

# Smallest first: the 0.5B model answers in ~2 s on 2 cores, the 1.5B in ~4 s.
LOCAL_PREFERENCE = (models.QWEN_05B, models.QWEN_15B)

# The two runtimes, by the name shown to people, and the module each imports.
LLAMA_CPP_PYTHON = "llama-cpp-python"
XLLAMACPP = "xllamacpp"
RUNTIME_MODULES = {LLAMA_CPP_PYTHON: "llama_cpp", XLLAMACPP: "xllamacpp"}
# "source" (or "llama-cpp-python") puts llama-cpp-python first; "prebuilt" (or
# "xllamacpp") and "auto" (the default) put xllamacpp first. The other one is still
# used when the preferred one is not installed. packaging/install-local-model.sh reads it too.
RUNTIME_ENV = "ARCHIVIST_LLM_RUNTIME"
_PREFER_SOURCE = ("source", LLAMA_CPP_PYTHON)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def pick_runtime(env: Mapping[str, str] | None = None) -> str | None:
    """The runtime the local provider uses (``LLAMA_CPP_PYTHON``/``XLLAMACPP``), or None.

    Checked without importing either. xllamacpp first (the wheel set-up installs),
    unless ``ARCHIVIST_LLM_RUNTIME`` says ``source``.
    """
    choice = (os.environ if env is None else env).get(RUNTIME_ENV, "auto").strip().lower()
    order = [XLLAMACPP, LLAMA_CPP_PYTHON]
    if choice in _PREFER_SOURCE:
        order.reverse()
    for runtime in order:
        if _importable(RUNTIME_MODULES[runtime]):
            return runtime
    return None


class ChatModel(Protocol):
    """A loaded model as the provider drives it, whatever the runtime.

    ``chat`` runs in the provider's worker thread and blocks until the answer is
    done: it calls ``on_text`` with each piece of text, checks ``should_stop``
    before each piece (True ends generation there) and raises on failure (a
    ``ValueError`` mentioning the "context window" for a prompt that does not fit).
    """

    runtime: str

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        on_text: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> None: ...

    def close(self) -> None: ...


ModelLoader = Callable[[Path], ChatModel]


# The shared grounded prompt (``build_messages``, ``PROMPT_VERSION``) plus one worked
# example turn. Measured with Qwen2.5-Coder 0.5B on five answerable questions: with
# the rules alone it cited 0/5 and claimed 3/5 answers were missing; with this one
# example it answered 5/5 and cited 3/5. A second example of a "not in the
# documents" answer made it refuse every question, so there is none. The example
# is a constant prefix, so llama.cpp reuses its cached prefill between questions.
LOCAL_PROMPT_VERSION = f"{PROMPT_VERSION}+one-shot-v1"

_EXAMPLE = GenerationRequest(
    question="What time does the library open on weekdays?",
    passages=(
        ContextPassage(
            1, "/docs/notes.txt", None, "The photocopier on the second floor is broken."
        ),
        ContextPassage(
            2,
            "/docs/library.md",
            None,
            "The library opens at 9:00 on weekdays and at 10:00 on Saturdays.",
        ),
    ),
)
_EXAMPLE_ANSWER = "The library opens at 9:00 on weekdays [2]."


def build_local_messages(request: GenerationRequest) -> list[dict[str, str]]:
    """``build_messages(request)`` with one worked example turn before the question."""
    system, user = build_messages(request)
    example_user = build_messages(_EXAMPLE)[1]
    return [
        system,
        example_user,
        {"role": "assistant", "content": _EXAMPLE_ANSWER},
        user,
    ]


def runtime_installed() -> bool:
    """Whether either runtime can be imported (checked without importing it)."""
    return pick_runtime() is not None


def local_model_available(
    models_dir: Path, preferred: str | None = None, *, require_runtime: bool = True
) -> str | None:
    """The catalog model (or configured file) the local provider can use, or None.

    Cheap enough for start-up: no hashing, no import of the runtime or the part
    packages. ``preferred`` (a configured name or path) wins when available;
    otherwise the smallest installed catalog model, since on two cores speed
    matters most. With ``require_runtime`` a model without a runtime to run it
    counts as unavailable.
    """
    if require_runtime and not runtime_installed():
        return None
    candidates = ((preferred,) if preferred else ()) + LOCAL_PREFERENCE
    for name in candidates:
        if models.installed(name, models_dir):
            return name
    return None


# --------------------------------------------------------------------------- the runtimes


class LlamaCppPythonModel:
    """``ChatModel`` over ``llama_cpp.Llama`` (or anything with its streaming
    ``create_chat_completion`` and ``close``)."""

    runtime = LLAMA_CPP_PYTHON

    def __init__(self, llama: Any) -> None:
        self.llama = llama

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        on_text: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> None:
        chunks: Iterator[Any] | None = None
        try:
            chunks = self.llama.create_chat_completion(
                messages=messages, stream=True, max_tokens=max_tokens, temperature=temperature
            )
            for chunk in chunks:
                if should_stop():
                    return
                choices = chunk.get("choices") or ()
                if not choices:
                    continue
                text = (choices[0].get("delta") or {}).get("content")
                if text:
                    on_text(str(text))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.debug("closing the completion stream failed", exc_info=True)

    def close(self) -> None:
        self.llama.close()


def _load_llama(path: Path, n_ctx: int, n_threads: int) -> ChatModel:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ProviderUnavailable(RUNTIME_MISSING) from exc
    try:
        llama = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ProviderUnavailable(
            f"the local model {path.name} could not be loaded ({exc})"
        ) from exc
    return LlamaCppPythonModel(llama)


# A Unix socket path longer than this does not fit sockaddr_un (108 bytes on Linux).
_MAX_SOCKET_PATH = 100


class XLlamaCppModel:
    """``ChatModel`` over ``xllamacpp.Server``: llama.cpp's own server, in process.

    The server is called directly (``handle_chat_completions`` with a streaming
    callback, run in the provider's worker thread; it releases the GIL), but it
    always listens for HTTP as well; the API has no way to switch that off. So
    ``load`` makes it listen on a Unix socket in a private temporary folder (mode
    0700, removed on ``close``) instead of a TCP port, and requires a random API
    key that nothing outside this object knows (only ``/health`` answers without
    it). Besides, the web UI, ``/slots`` (each slot's state and settings; in this
    version not the prompt's text), ``/metrics`` and changing ``/props`` are off.
    Its host-memory cache of earlier prompts (``cache_ram_mib``, 8 GiB by default)
    is off too: like llama-cpp-python, only the prompt still in the context is
    reused (the constant prefix of the prompt).
    """

    runtime = XLLAMACPP

    def __init__(self, server: Any, socket_dir: str | None, n_ctx: int, api_key: str) -> None:
        self._server: Any = server
        self._socket_dir = socket_dir
        self.n_ctx = n_ctx
        self._api_key = api_key  # kept for tests that knock on the server's door

    @property
    def listening_address(self) -> str:
        """Where the embedded server listens (``unix://...``; tests check it)."""
        return str(self._server.listening_address) if self._server is not None else ""

    @classmethod
    def load(cls, path: Path, n_ctx: int, n_threads: int) -> XLlamaCppModel:
        try:
            import xllamacpp
        except ImportError as exc:  # also a missing libgomp.so.1
            raise ProviderUnavailable(f"{RUNTIME_MISSING}: {exc}") from exc
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = n_ctx
        params.n_parallel = 1
        # As llama-cpp-python does: n_threads to decode, every core for the prompt.
        params.cpuparams.n_threads = n_threads
        params.cpuparams_batch.n_threads = max(os.cpu_count() or 1, 1)
        params.verbosity = -1
        params.cache_ram_mib = 0
        # Thoughts stay in the text, as llama-cpp-python leaves them.
        params.reasoning_format = xllamacpp.common_reasoning_format.COMMON_REASONING_FORMAT_NONE
        params.ui = False
        params.endpoint_slots = False
        params.endpoint_props = False
        params.endpoint_metrics = False
        params.n_threads_http = 1
        api_key = secrets.token_urlsafe(32)
        params.api_keys = [api_key]
        socket_dir: str | None = tempfile.mkdtemp(prefix="archivist-llm-")
        socket = os.path.join(socket_dir or "", "llama.sock")
        if len(socket) <= _MAX_SOCKET_PATH:
            params.hostnames = [socket]
        else:  # TMPDIR too deep for a socket path: loopback, behind the API key
            log.warning("xllamacpp listens on 127.0.0.1 (no short path for a Unix socket)")
            shutil.rmtree(socket_dir or "", ignore_errors=True)
            socket_dir = None
            params.hostnames = ["127.0.0.1"]
        try:
            server = xllamacpp.Server(params)
        except (RuntimeError, ValueError, OSError) as exc:
            if socket_dir is not None:
                shutil.rmtree(socket_dir, ignore_errors=True)
            raise ProviderUnavailable(
                f"the local model {path.name} could not be loaded ({exc})"
            ) from exc
        return cls(server, socket_dir, n_ctx, api_key)

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        on_text: Callable[[str], None],
        should_stop: Callable[[], bool],
    ) -> None:
        server = self._server
        if server is None:
            raise RuntimeError("xllamacpp: the model is closed")
        errors: list[Any] = []
        raised: list[BaseException] = []
        finished = False

        def on_chunk(chunk: Any) -> bool:
            # Returning True ends the stream; an exception raised here would be
            # swallowed by xllamacpp (and end it too), so it is kept and re-raised.
            nonlocal finished
            try:
                if not isinstance(chunk, dict):
                    errors.append(chunk)
                    return True
                if "error" in chunk:
                    errors.append(chunk["error"])
                    return True
                if should_stop():
                    return True
                choices = chunk.get("choices") or ()
                if choices:
                    text = (choices[0].get("delta") or {}).get("content")
                    if text:
                        on_text(str(text))
                    finished = finished or choices[0].get("finish_reason") is not None
                return False
            except BaseException as exc:
                raised.append(exc)
                return True

        body = {
            "messages": messages,
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        server.handle_chat_completions(body, on_chunk)
        if raised:
            raise raised[0]
        if errors:
            raise _xllamacpp_error(errors[0], self.n_ctx)
        if not finished and not should_stop():
            raise RuntimeError("xllamacpp: the answer ended without a finish reason")

    def close(self) -> None:
        # Dropping the server stops its loop and HTTP threads (its destructor joins them).
        self._server = None
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None


def _xllamacpp_error(error: Any, n_ctx: int) -> Exception:
    if isinstance(error, dict):
        if error.get("type") == "exceed_context_size_error":
            # The wording llama-cpp-python uses, which _map_error turns into a rejection.
            return ValueError(
                f"Requested tokens ({error.get('n_prompt_tokens', '?')}) exceed "
                f"context window of {error.get('n_ctx', n_ctx)}"
            )
        return RuntimeError(f"xllamacpp: {error.get('message') or error}")
    return RuntimeError(f"xllamacpp: {error}")


def load_model(path: Path, n_ctx: int, n_threads: int, runtime: str) -> ChatModel:
    """``path`` loaded by ``runtime`` (``LLAMA_CPP_PYTHON`` or ``XLLAMACPP``)."""
    if runtime == XLLAMACPP:
        return XLlamaCppModel.load(path, n_ctx, n_threads)
    return _load_llama(path, n_ctx, n_threads)


_Item = (
    tuple[Literal["token"], str]
    | tuple[Literal["done"], None]
    | tuple[Literal["error"], BaseException]
)


class LlamaCppProvider:
    """Implements ``core.providers.base.Provider`` with a GGUF model in this process.

    ``runtime`` names the llama.cpp runtime (default: ``pick_runtime()``);
    ``loader`` builds the model from a file path instead (tests pass a small
    stand-in to exercise threading and timeouts without a model).

        provider = LlamaCppProvider(settings, settings_root.models_dir)
        await provider.start()            # optional warm-up
        async for text in provider.stream(request): ...
        await provider.aclose()
    """

    kind = "llama_cpp"

    def __init__(
        self,
        settings: ProviderSettings,
        models_dir: Path,
        *,
        n_ctx: int = N_CTX,
        n_threads: int = N_THREADS,
        loader: ModelLoader | None = None,
        runtime: str | None = None,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.models_dir = models_dir
        self.model_name = settings.model or models.DEFAULT_LOCAL_LLM
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self._loader = loader
        self.runtime = runtime if runtime is not None or loader is not None else pick_runtime()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"llama-{self.name}"
        )
        self._model: ChatModel | None = None
        self._load_future: asyncio.Future[ChatModel] | None = None
        self._busy: asyncio.Lock | None = None  # created inside the running loop
        self._active_stop: threading.Event | None = None
        self._closed = False
        self.model_path: Path | None = None

    def __repr__(self) -> str:
        return f"LlamaCppProvider(name={self.name!r}, model={self.model_name!r})"

    @property
    def busy(self) -> bool:
        """True while an answer is being generated (including one still stopping)."""
        return self._busy is not None and self._busy.locked()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def backend(self) -> str:
        """The model and the runtime that runs it, for health and "why this answer"."""
        runtime = self._model.runtime if self._model is not None else self.runtime
        name = (self.model_path or Path(self.model_name)).name
        if runtime == XLLAMACPP:
            return f"{name} on xllamacpp (prebuilt llama.cpp)"
        if runtime == LLAMA_CPP_PYTHON:
            return f"{name} on llama-cpp-python (llama.cpp built from source)"
        return f"{name} (no runtime installed)" if runtime is None else f"{name} on {runtime}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the model now (optional: the first question loads it otherwise)."""
        await self._ensure_model()

    async def aclose(self) -> None:
        """Stop any answer in progress, free the model and end the worker thread."""
        if self._closed:
            return
        self._closed = True
        if self._active_stop is not None:
            self._active_stop.set()
        loop = asyncio.get_running_loop()
        try:
            # The single worker runs jobs in order: this runs after any answer in
            # progress has stopped, and after a load in progress has finished.
            await loop.run_in_executor(self._executor, self._free)
        finally:
            self._executor.shutdown(wait=False)

    def _free(self) -> None:
        model, self._model = self._model, None
        if model is not None:
            try:
                model.close()
            except Exception:  # freeing must not fail a shutdown
                log.exception("closing the local model failed")

    # ------------------------------------------------------------------ loading

    def _load_blocking(self) -> ChatModel:
        if self._model is not None:
            return self._model
        try:
            path = models.resolve(self.model_name, self.models_dir)
        except ModelError as exc:
            raise ProviderUnavailable(f"the local model is not available: {exc.message}") from exc
        self.model_path = path
        if self._loader is not None:
            model: ChatModel = self._loader(path)
        elif self.runtime is None:
            raise ProviderUnavailable(RUNTIME_MISSING)
        else:
            model = load_model(path, self.n_ctx, self.n_threads, self.runtime)
        self._model = model
        log.info("loaded the local model %s from %s (%s)", self.model_name, path, model.runtime)
        return model

    async def _ensure_model(self) -> ChatModel:
        if self._closed:
            raise ProviderUnavailable("the local model provider is closed", provider=self.name)
        if self._model is not None:
            return self._model
        loop = asyncio.get_running_loop()
        if self._load_future is None or (
            self._load_future.done()
            and (self._load_future.cancelled() or self._load_future.exception() is not None)
        ):
            if self._loader is None and self.runtime is None:
                self.runtime = pick_runtime()  # installed since this provider was made?
                if self.runtime is None:
                    raise ProviderUnavailable(RUNTIME_MISSING, provider=self.name)
            self._load_future = loop.run_in_executor(self._executor, self._load_blocking)
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                return await asyncio.shield(self._load_future)
        except TimeoutError as exc:
            raise ProviderUnavailable(
                f"the local model took longer than {self.settings.timeout_s:g} s to load",
                provider=self.name,
            ) from exc
        except ProviderUnavailable as exc:
            exc.provider = exc.provider or self.name
            raise
        except Exception as exc:  # an unexpected loader failure is still an outage
            raise ProviderUnavailable(
                f"the local model could not be loaded ({type(exc).__name__}: {exc})",
                provider=self.name,
            ) from exc

    # ------------------------------------------------------------------ generation

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        s = self.settings
        model = await self._ensure_model()
        loop = asyncio.get_running_loop()
        start = loop.time()
        total_deadline = start + s.timeout_s
        first_deadline = min(start + s.first_token_timeout_s, total_deadline)
        if self._busy is None:
            self._busy = asyncio.Lock()
        busy = self._busy

        try:
            async with asyncio.timeout_at(first_deadline):
                await busy.acquire()
        except TimeoutError as exc:
            raise ProviderUnavailable(
                "the local model is still busy with another answer", provider=self.name
            ) from exc

        if self._closed:  # aclose() ran while this answer waited for its turn
            busy.release()
            raise ProviderUnavailable("the local model provider is closed", provider=self.name)
        queue: asyncio.Queue[_Item] = asyncio.Queue()
        stop = threading.Event()
        handed_over = False
        got_text = False
        try:

            def emit(item: _Item) -> None:
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, item)
                except RuntimeError:  # the loop is closed: nobody is listening
                    stop.set()

            messages = build_local_messages(request)
            max_tokens = min(request.max_tokens, s.max_tokens)
            job = loop.run_in_executor(
                self._executor,
                _generate,
                model,
                messages,
                max_tokens,
                request.temperature,
                stop,
                emit,
            )
            # The lock is released when the worker has really finished, not when
            # the consumer leaves, so the next answer never overlaps this one.
            job.add_done_callback(lambda _: busy.release())
            handed_over = True
            self._active_stop = stop

            while True:
                deadline = total_deadline if got_text else first_deadline
                try:
                    async with asyncio.timeout_at(deadline):
                        item = await queue.get()
                except TimeoutError as exc:
                    if got_text:
                        why = f"the answer took longer than {s.timeout_s:g} s"
                    else:
                        why = f"no answer within {first_deadline - start:g} s"
                    raise ProviderUnavailable(why, provider=self.name) from exc
                if item[0] == "token":
                    got_text = True
                    yield item[1]
                elif item[0] == "done":
                    return
                else:
                    error = item[1]
                    mapped = _map_error(error, self.name)
                    if mapped is error:
                        raise mapped
                    raise mapped from error
        finally:
            stop.set()
            if self._active_stop is stop:
                self._active_stop = None
            if not handed_over:
                busy.release()


def _generate(
    model: ChatModel,
    messages: list[dict[str, str]],
    max_tokens: int,
    temperature: float,
    stop: threading.Event,
    emit: Callable[[_Item], None],
) -> None:
    """Worker thread: stream tokens into ``emit`` until done or ``stop`` is set."""
    try:
        if stop.is_set():
            return
        model.chat(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            on_text=lambda text: emit(("token", text)),
            should_stop=stop.is_set,
        )
        if not stop.is_set():
            emit(("done", None))
    except BaseException as exc:
        emit(("error", exc))


def _map_error(exc: BaseException, provider: str) -> Exception:
    if isinstance(exc, ProviderUnavailable | ProviderRejected):
        return exc
    text = str(exc)
    if isinstance(exc, ValueError) and "context window" in text:
        return ProviderRejected(
            f"the question and passages are too long for the local model ({text})",
            provider=provider,
        )
    return ProviderUnavailable(
        f"the local model failed mid-answer ({type(exc).__name__}: {text})", provider=provider
    )
