"""A real llama.cpp HTTP server on 127.0.0.1, for tests that need one to kill.

    python -m tests.support.llama_server MODEL.gguf PORT

Runs the prebuilt runtime's (xllamacpp's) OpenAI-compatible server in its own
process until killed: ``/v1/models``, ``/v1/chat/completions`` (streamed or not).
A test starts it as a primary provider and kills the process mid-answer, as a
crashed ``llama-server`` would die.
"""

from __future__ import annotations

import signal
import sys


def main(argv: list[str]) -> int:
    model, port = argv[0], int(argv[1])
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.n_ctx = 4096
    params.n_parallel = 1
    params.cpuparams.n_threads = 2
    params.verbosity = -1
    params.ui = False
    params.hostnames = ["127.0.0.1"]
    params.port = port
    server = xllamacpp.Server(params)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    del server
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    raise SystemExit(main(sys.argv[1:]))
