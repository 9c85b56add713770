"""Two llama.cpp runtimes on the same GGUF files: llama-cpp-python (built from
source) against xllamacpp (a prebuilt wheel).

    .venv/bin/python tests/bench/llm_runtimes.py [--models 0.5b,1.5b] [--rounds 5] [--json]

Other engineers share this machine's two cores, so a figure taken while
someone else's job runs is worth less than a figure taken beside its rival.
The runtimes are therefore measured interleaved, A B A B ... (the order flips
every round), with the same chat messages, ``n_threads``, ``n_ctx``, greedy
sampling and ``max_tokens``; medians are reported with the 1-minute load
average read before every run.

The prompt is the local provider's real one (``build_local_messages``): the
constant prefix (rules + worked example), which both runtimes keep cached
between questions, and a grounded part (three passages + the question) that
changes every round; round ``i`` asks both runtimes the same question.

* ``cold_ttft_s``: the first question after loading (the whole prompt prefilled);
* ``ttft_s``: time from asking to the first piece of text (grounded prefill);
* ``decode_tok_s``: streamed pieces after the first / the time they took.

Each runtime runs in its own process, loaded once, and is called the way the
provider calls it: from a worker thread with a streamed chat completion; the
time of each piece is taken where it arrives in Python. xllamacpp's host-memory
cache of earlier prompts is switched off (llama-cpp-python has none), so both
reuse only the prefix shared with the previous prompt.

llama-cpp-python is not installed by default: ``pip install -e '.[local-llm-source]'``
(a few minutes of compiling) to run this.
The figures of 2026-12-01 are in README's set-up section.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core import models
from core.providers.llama_cpp import N_CTX, build_local_messages
from core.types import ContextPassage, GenerationRequest
from tests.bench.local_llm import PASSAGES, QUESTIONS

SHORT = {"0.5b": models.QWEN_05B, "1.5b": models.QWEN_15B}

Messages = list[dict[str, str]]


def prompt(i: int) -> Messages:
    """Round ``i``'s messages: question ``i % 4`` over the passages rotated by
    ``i % 3`` (reversed every other three rounds). The first 12 are all different;
    a round can reuse the cached prefix it shares with the previous round's prompt
    (the constant part, sometimes the first passage too), the same for both runtimes."""
    k = i % len(PASSAGES)
    order = PASSAGES[k:] + PASSAGES[:k]
    if (i // len(PASSAGES)) % 2:
        order = order[::-1]
    passages = tuple(
        ContextPassage(n, p.source, p.page, p.text) for n, p in enumerate(order, start=1)
    )
    request = GenerationRequest(QUESTIONS[i % len(QUESTIONS)], passages, temperature=0.0)
    return build_local_messages(request)


@dataclass
class Run:
    runtime: str
    model: str
    round: int
    load_avg_1m: float
    ttft_s: float
    pieces: int
    decode_tok_s: float
    text: str


class _Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first = 0.0
        self.last = 0.0
        self.pieces = 0
        self.text: list[str] = []

    def piece(self, text: str) -> None:
        now = time.perf_counter()
        if self.pieces == 0:
            self.first = now
        self.last = now
        self.pieces += 1
        self.text.append(text)

    def result(self) -> tuple[float, int, float, str]:
        decode_s = self.last - self.first
        rate = (self.pieces - 1) / decode_s if self.pieces > 1 and decode_s > 0 else 0.0
        return self.first - self.start, self.pieces, rate, "".join(self.text)


class LlamaCppPython:
    name = "llama-cpp-python"

    def __init__(self, path: Path, threads: int) -> None:
        import llama_cpp

        self.version = llama_cpp.__version__
        self.llama = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=N_CTX,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )

    def ask(self, messages: Messages, max_tokens: int, timer: _Timer) -> None:
        chunks = self.llama.create_chat_completion(
            messages=messages, stream=True, max_tokens=max_tokens, temperature=0.0
        )
        for chunk in chunks:
            text = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
            if text:
                timer.piece(text)

    def close(self) -> None:
        self.llama.close()


class XLlamaCpp:
    name = "xllamacpp"

    def __init__(self, path: Path, threads: int) -> None:
        import xllamacpp

        self.version = xllamacpp.__version__
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = N_CTX
        params.n_parallel = 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.verbosity = -1
        # Its host-memory cache of earlier prompts (llama-cpp-python has none) would
        # let a repeated prefix skip prefill; off, both reuse only the last prompt.
        params.cache_ram_mib = 0
        self.server: Any = xllamacpp.Server(params)

    def ask(self, messages: Messages, max_tokens: int, timer: _Timer) -> None:
        errors: list[Any] = []

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if "error" in chunk:
                errors.append(chunk["error"])
                return True
            choices = chunk.get("choices") or ()
            text = (choices[0].get("delta") or {}).get("content") if choices else None
            if text:
                timer.piece(text)
            return False

        body = {
            "messages": messages,
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": 0.0,
        }
        self.server.handle_chat_completions(body, on_chunk)
        if errors:
            raise RuntimeError(f"xllamacpp: {errors[0]}")

    def close(self) -> None:
        del self.server


RUNTIMES: dict[str, Callable[[Path, int], Any]] = {
    LlamaCppPython.name: LlamaCppPython,
    XLlamaCpp.name: XLlamaCpp,
}


# Each runtime lives in its own process (so neither's idle threads or OpenMP
# spinning can slow the other), loaded once and asked in turn.
_RUNTIME: Any = None


def _load(name: str, path: Path, threads: int) -> None:
    global _RUNTIME
    _RUNTIME = RUNTIMES[name](path, threads)


def _loaded() -> tuple[str, str]:
    return _RUNTIME.name, _RUNTIME.version


def _ask(messages: Messages, max_tokens: int) -> tuple[float, float, int, float, str]:
    """In the runtime's process: one streamed answer from a worker thread, as the
    provider runs it (the GIL is released while llama.cpp computes)."""
    load = os.getloadavg()[0]
    timer = _Timer()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(_RUNTIME.ask, messages, max_tokens, timer).result()
    return (load, *timer.result())


def bench_model(
    model: str, models_dir: Path, rounds: int, threads: int, max_tokens: int, log: Any
) -> dict[str, Any]:
    path = models.resolve(model, models_dir)
    names = list(RUNTIMES)
    pools: dict[str, ProcessPoolExecutor] = {}
    load_s: dict[str, float] = {}
    versions: dict[str, str] = {}
    cold: list[Run] = []
    runs: list[Run] = []

    def one(name: str, i: int, messages: Messages) -> Run:
        load, ttft, pieces, rate, text = pools[name].submit(_ask, messages, max_tokens).result()
        run = Run(name, model, i, round(load, 2), ttft, pieces, rate, text)
        log(run)
        return run

    try:
        for name in names:
            t0 = time.perf_counter()
            pools[name] = ProcessPoolExecutor(
                1,
                mp_context=mp.get_context("spawn"),
                initializer=_load,
                initargs=(name, path, threads),
            )
            versions[name] = pools[name].submit(_loaded).result()[1]
            load_s[name] = time.perf_counter() - t0
        cold_messages = prompt(rounds)  # a prompt no round asks
        cold = [one(name, -1, cold_messages) for name in names]
        for i in range(rounds):
            messages = prompt(i)
            for name in names if i % 2 == 0 else names[::-1]:
                runs.append(one(name, i, messages))
    finally:
        for pool in pools.values():
            pool.shutdown()
    summary: dict[str, Any] = {}
    for name in names:
        mine = [r for r in runs if r.runtime == name]
        summary[name] = {
            "version": versions[name],
            "load_s": round(load_s[name], 2),
            "cold_ttft_ms": round(next(r.ttft_s for r in cold if r.runtime == name) * 1000),
            "ttft_ms": round(statistics.median(r.ttft_s for r in mine) * 1000),
            "decode_tok_s": round(statistics.median(r.decode_tok_s for r in mine), 1),
            "pieces": statistics.median(r.pieces for r in mine),
            "load_avg_1m_median": round(statistics.median(r.load_avg_1m for r in mine), 2),
            "ttft_ms_all": [round(r.ttft_s * 1000) for r in mine],
            "decode_tok_s_all": [round(r.decode_tok_s, 1) for r in mine],
            "load_avg_1m_all": [r.load_avg_1m for r in mine],
        }
    a, b = (summary[n] for n in names)
    same_text = sum(1 for i in range(rounds) if len({r.text for r in runs if r.round == i}) == 1)
    return {
        "model": model,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "rounds": rounds,
        "runtimes": summary,
        "ratio": {
            "what": f"{names[1]} / {names[0]}",
            "ttft": round(b["ttft_ms"] / a["ttft_ms"], 3),
            "decode_tok_s": round(b["decode_tok_s"] / a["decode_tok_s"], 3),
        },
        "identical_answers": f"{same_text}/{rounds}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="0.5b,1.5b", help="0.5b, 1.5b or catalog names")
    parser.add_argument("--models-dir", type=Path, help="default: the data folder's models/")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 11:
        parser.error("--rounds must be 1..11 (the number of distinct prompts - 1)")
    missing = [m for m in ("llama_cpp", "xllamacpp") if importlib.util.find_spec(m) is None]
    if missing:
        parser.error(
            f"{', '.join(missing)} not installed: pip install -e '.[local-llm,local-llm-source]'"
        )
    models_dir = args.models_dir or models._default_models_dir()

    def log(run: Run) -> None:
        print(
            f"  {run.model[:30]:30} {run.runtime:17} round {run.round:2}  "
            f"load {run.load_avg_1m:4.2f}  first token {run.ttft_s * 1000:6.0f} ms  "
            f"{run.decode_tok_s:5.1f} tok/s  ({run.pieces} pieces)",
            file=sys.stderr,
        )

    results = [
        bench_model(SHORT.get(m, m), models_dir, args.rounds, args.threads, args.max_tokens, log)
        for m in args.models.split(",")
    ]
    out = {
        "threads": args.threads,
        "n_ctx": N_CTX,
        "max_tokens": args.max_tokens,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "models": results,
    }
    if args.json:
        print(json.dumps(out))
        return
    print(
        f"{args.threads} threads, n_ctx {N_CTX}, greedy, max {args.max_tokens} tokens, "
        f"{os.cpu_count()} CPUs; medians of {args.rounds} interleaved rounds"
    )
    header = (
        f"{'model':36} {'runtime':17} {'load s':>6} {'cold ms':>8} {'first ms':>9} "
        f"{'tok/s':>6} {'load avg':>8}"
    )
    print(header)
    for result in results:
        for name, r in result["runtimes"].items():
            print(
                f"{result['model']:36} {name:17} {r['load_s']:6.1f} {r['cold_ttft_ms']:8} "
                f"{r['ttft_ms']:9} {r['decode_tok_s']:6.1f} {r['load_avg_1m_median']:8.2f}"
            )
        ratio = result["ratio"]
        print(
            f"{'':36} {ratio['what']}: first token x{ratio['ttft']}, "
            f"tok/s x{ratio['decode_tok_s']}; identical answers {result['identical_answers']}"
        )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
