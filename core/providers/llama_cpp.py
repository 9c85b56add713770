"""The local, in-process LLM: a GGUF model run by llama-cpp-python.

The model file comes from the catalog (``core.models``): ``settings.model`` is a
catalog name or a ``.gguf`` path (empty: the default 0.5B model). It is loaded
on first use, or by ``start()``, in the provider's own worker thread.

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
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

from core import models
from core.config import ProviderSettings
from core.errors import ModelError, ProviderRejected, ProviderUnavailable
from core.providers.openai import PROMPT_VERSION, build_messages
from core.types import ContextPassage, GenerationRequest

log = logging.getLogger(__name__)

RUNTIME_MISSING = "the local model runtime is not installed (pip install 'archivist[local-llm]')"

N_CTX = 4096
N_THREADS = 2

# Smallest first: the 0.5B model answers in ~2 s on 2 cores, the 1.5B in ~4 s.
LOCAL_PREFERENCE = (models.QWEN_05B, models.QWEN_15B)


class ChatModel(Protocol):
    """The part of ``llama_cpp.Llama`` this provider uses."""

    def create_chat_completion(self, *args: Any, **kwargs: Any) -> Any: ...

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
    """Whether ``llama_cpp`` can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        return False


def local_model_available(
    models_dir: Path, preferred: str | None = None, *, require_runtime: bool = True
) -> str | None:
    """The catalog model (or configured file) the local provider can use, or None.

    Cheap enough for start-up: no hashing, no import of the runtime or the part
    packages. ``preferred`` (a configured name or path) wins when available;
    otherwise the smallest installed catalog model, since on two cores speed
    matters most. With ``require_runtime`` a model without llama-cpp-python
    counts as unavailable.
    """
    if require_runtime and not runtime_installed():
        return None
    candidates = ((preferred,) if preferred else ()) + LOCAL_PREFERENCE
    for name in candidates:
        if models.installed(name, models_dir):
            return name
    return None


def _load_llama(path: Path, n_ctx: int, n_threads: int) -> ChatModel:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ProviderUnavailable(RUNTIME_MISSING) from exc
    try:
        llama: ChatModel = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ProviderUnavailable(
            f"the local model {path.name} could not be loaded ({exc})"
        ) from exc
    return llama


_Item = (
    tuple[Literal["token"], str]
    | tuple[Literal["done"], None]
    | tuple[Literal["error"], BaseException]
)


class LlamaCppProvider:
    """Implements ``core.providers.base.Provider`` with a GGUF model in this process.

    ``loader`` builds the model from a file path (default: ``llama_cpp.Llama``);
    tests pass a small stand-in to exercise threading and timeouts without a model.

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
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.models_dir = models_dir
        self.model_name = settings.model or models.DEFAULT_LOCAL_LLM
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self._loader = loader
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
        else:
            model = _load_llama(path, self.n_ctx, self.n_threads)
        self._model = model
        log.info("loaded the local model %s from %s", self.model_name, path)
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
            if not runtime_installed() and self._loader is None:
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
    chunks: Iterator[Any] | None = None
    try:
        if stop.is_set():
            return
        chunks = model.create_chat_completion(
            messages=messages, stream=True, max_tokens=max_tokens, temperature=temperature
        )
        for chunk in chunks:
            if stop.is_set():
                return
            choices = chunk.get("choices") or ()
            if not choices:
                continue
            text = (choices[0].get("delta") or {}).get("content")
            if text:
                emit(("token", str(text)))
        emit(("done", None))
    except BaseException as exc:
        emit(("error", exc))
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.debug("closing the completion stream failed", exc_info=True)


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
