"""Time from a cold interpreter to a shown, usable main window (offscreen).

    .venv/bin/python tests/bench/startup.py [--runs 5] [--json]

Each run is a fresh process: import Qt and the app, build the window, show it,
start Services (database, migrations; models load lazily in the background)
and wait until the bridge says ready. Prints the median of the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import time
t0 = time.perf_counter()
import asyncio, os, sys
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import qasync
from PySide6.QtWidgets import QApplication
from app.bridge import ServicesBridge
from app.window import MainWindow
from core.config import load_settings
app = QApplication(sys.argv)
t_import = time.perf_counter() - t0

async def main():
    bridge = ServicesBridge(load_settings())
    window = MainWindow(bridge)
    window.show()
    app.processEvents()
    t_shown = time.perf_counter() - t0
    ready = asyncio.Event()
    bridge.ready.connect(ready.set)
    bridge.start()
    await ready.wait()
    t_ready = time.perf_counter() - t0
    await bridge.aclose()
    print(f"{t_import:.3f} {t_shown:.3f} {t_ready:.3f}")

qasync.run(main())
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "ARCHIVIST_HOME": home, "QT_QPA_PLATFORM": "offscreen"}
        for _ in range(args.runs):
            out = subprocess.run(
                [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
            ).stdout.split()
            rows.append([float(x) for x in out[-3:]])
    result = {
        "runs": args.runs,
        "imports_s": statistics.median(r[0] for r in rows),
        "window_shown_s": statistics.median(r[1] for r in rows),
        "services_ready_s": statistics.median(r[2] for r in rows),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"median of {args.runs}: imports {result['imports_s']:.2f} s, window shown "
            f"{result['window_shown_s']:.2f} s, ready to ask {result['services_ready_s']:.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
