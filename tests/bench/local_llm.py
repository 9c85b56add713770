"""Speed of the local GGUF model through ``LlamaCppProvider`` on this machine.

    .venv/bin/python tests/bench/local_llm.py [--model NAME_OR_GGUF] [--runs 3] [--json]

The prompt is the provider's real one (``build_local_messages``): about 310
tokens of constant prefix (system rules + one worked example), which llama.cpp
keeps cached after the first question, and a grounded part of about 350 tokens
(three passages + the question) that changes with every question. Each run asks
a different question with the passages in a different order. It reports:

* load_s: loading the model file (once, mmap'd);
* cold_ttft_s: the first question after loading (the whole prompt is prefilled);
* ttft_s: median time from asking to the first piece of text over ``--runs``
  later questions (waiting + prefill of the grounded part);
* prefill_tok_s: grounded tokens / ttft;
* decode_tok_s: streamed pieces after the first / the time they took
  (llama.cpp streams one piece per token, except for merged multi-byte text).

The model file is assembled into a temporary folder unless ``--models-dir``
points at one that already holds it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core import models
from core.config import ProviderSettings
from core.providers.llama_cpp import (
    N_CTX,
    LlamaCppProvider,
    LlamaCppPythonModel,
    build_local_messages,
)
from core.types import ContextPassage, GenerationRequest

PASSAGES = (
    ContextPassage(
        1,
        "/docs/observatory/notes.html",
        None,
        "The refracting telescope in the east dome has an aperture of 240 millimetres and a "
        "focal length of 3.6 metres. It was installed in 1931 and restored in 2004, when the "
        "original brass tube was kept but the objective lens was recoated. Viewing nights are "
        "held on the first Friday of each month from October to March, weather permitting; "
        "visitors should book through the society's secretary at least a week ahead.",
    ),
    ContextPassage(
        2,
        "/docs/ferry/timetable.pdf",
        2,
        "The morning ferry to Gull Island leaves the north pier at 07:15 on weekdays and at "
        "08:30 on Saturdays; there is no Sunday service between November and February. A return "
        "ticket costs eleven euros for adults and five euros for children under twelve. "
        "Bicycles travel free of charge, but dogs must be kept on a lead on the upper deck.",
    ),
    ContextPassage(
        3,
        "/docs/garden/rota.md",
        None,
        "Beds in the community garden are watered on Tuesdays and Saturdays by the volunteer "
        "group. The compost bins are turned once a fortnight; brown leaves go in bin three and "
        "kitchen scraps in bin one. Tools are kept in the green shed, whose key hangs in the "
        "café behind the counter.",
    ),
)

QUESTIONS = (
    "When are viewing nights held, and what is the telescope's aperture? "
    "Explain in a few sentences.",
    "What does a return ticket to Gull Island cost, and can I bring my bicycle? "
    "Explain in a few sentences.",
    "How often are the compost bins turned, and where are the tools kept? "
    "Explain in a few sentences.",
    "When does the morning ferry leave on Saturdays, and is there a Sunday service? "
    "Explain in a few sentences.",
)


def request(i: int) -> GenerationRequest:
    """Question ``i`` with the passages in a rotated order, so that no two runs share
    more than the constant prefix (system rules + worked example) of the prompt."""
    k = i % len(PASSAGES)
    rotated = PASSAGES[k:] + PASSAGES[:k]
    if i == len(QUESTIONS) - 1:  # the cold question: an order no later run uses
        rotated = rotated[::-1]
    passages = tuple(
        ContextPassage(n, p.source, p.page, p.text) for n, p in enumerate(rotated, start=1)
    )
    return GenerationRequest(QUESTIONS[i], passages, max_tokens=160, temperature=0.0)


async def _one(provider: LlamaCppProvider, req: GenerationRequest) -> dict[str, float]:
    start = time.perf_counter()
    first = last = 0.0
    pieces = 0
    async for _ in provider.stream(req):
        now = time.perf_counter()
        if pieces == 0:
            first = now
        last = now
        pieces += 1
    decode_s = last - first
    return {
        "ttft_s": first - start,
        "pieces": float(pieces),
        "decode_tok_s": (pieces - 1) / decode_s if pieces > 1 and decode_s > 0 else 0.0,
    }


async def bench(model: str, models_dir: Path, runs: int, threads: int) -> dict[str, Any]:
    import llama_cpp

    path = await asyncio.to_thread(models.resolve, model, models_dir)
    loaded: dict[str, Any] = {}

    def loader(p: Path) -> Any:
        t0 = time.perf_counter()
        llama = llama_cpp.Llama(model_path=str(p), n_ctx=N_CTX, n_threads=threads, verbose=False)
        loaded["load_s"] = time.perf_counter() - t0
        loaded["llama"] = llama
        return LlamaCppPythonModel(llama)

    settings = ProviderSettings(
        name="bench",
        kind="llama_cpp",
        model=str(path),
        timeout_s=600.0,
        first_token_timeout_s=300.0,
        max_tokens=160,
    )
    provider = LlamaCppProvider(settings, models_dir, n_threads=threads, loader=loader)
    try:
        await provider.start()
        llama = loaded["llama"]
        n_tok = lambda text: len(llama.tokenize(text.encode("utf-8"), add_bos=False))  # noqa: E731
        messages = build_local_messages(request(0))
        # + the chat template's role markers (about 5 tokens per message)
        prompt_tokens = sum(n_tok(m["content"]) + 5 for m in messages)
        prefix_tokens = sum(n_tok(m["content"]) + 5 for m in messages[:-1])
        grounded_tokens = prompt_tokens - prefix_tokens
        cold = await _one(provider, request(len(QUESTIONS) - 1))  # the first question
        results = [await _one(provider, request(i % (len(QUESTIONS) - 1))) for i in range(runs)]
    finally:
        await provider.aclose()
    ttft = statistics.median(r["ttft_s"] for r in results)
    return {
        "model": model,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "threads": threads,
        "n_ctx": N_CTX,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "prompt_tokens": prompt_tokens,
        "constant_prefix_tokens": prefix_tokens,
        "grounded_tokens": grounded_tokens,
        "cold_ttft_s": round(cold["ttft_s"], 3),
        "answer_pieces": statistics.median(r["pieces"] for r in results),
        "runs": runs,
        "load_s": round(loaded["load_s"], 3),
        "ttft_s": round(ttft, 3),
        "prefill_tok_s": round(grounded_tokens / ttft, 1),
        "decode_tok_s": round(statistics.median(r["decode_tok_s"] for r in results), 1),
        "ttft_s_all": [round(r["ttft_s"], 3) for r in results],
        "decode_tok_s_all": [round(r["decode_tok_s"], 1) for r in results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=models.QWEN_05B)
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = args.models_dir or Path(tmp)
        result = asyncio.run(bench(args.model, models_dir, args.runs, args.threads))
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['model']} ({result['file_mb']} MB), {result['threads']} threads, "
        f"load average {result['load_avg_1m']} on {result['cpus']} CPUs"
    )
    print(f"  load                {result['load_s']:.2f} s")
    print(
        f"  prompt              {result['prompt_tokens']} tokens: "
        f"{result['constant_prefix_tokens']} constant (rules + example, cached after the "
        f"first question) + {result['grounded_tokens']} grounded (passages + question)"
    )
    print(f"  first question      {result['cold_ttft_s']:.2f} s to the first token")
    print(
        f"  time to first token {result['ttft_s']:.2f} s  (median of {result['runs']}; "
        f"{result['ttft_s_all']})"
    )
    print(f"  prefill             {result['prefill_tok_s']:.0f} tok/s")
    print(
        f"  decode              {result['decode_tok_s']:.1f} tok/s  ({result['decode_tok_s_all']})"
    )
    print(f"  answer              {result['answer_pieces']:.0f} pieces")


if __name__ == "__main__":
    main()
