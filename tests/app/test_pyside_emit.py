"""The installed PySide6 must not leak references on ``Signal.emit`` (6.12.0 does).

PySide6 6.12.0 drops a reference to ``True`` (what ``emit()`` returns) on every
emission; on Python 3.11, where ``True`` is not immortal, the interpreter
aborts with "bool_dealloc" after a few hundred to a thousand emissions — one
streamed answer. pyproject.toml excludes that build; this test fails on any
build that leaks, in a child process so that an abort is a result, not a crash
of the test session. It must not import ``app`` (nothing may patch Qt there).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

EMITS = 5000

PROBE = textwrap.dedent(
    f"""
    import sys
    from PySide6.QtCore import QCoreApplication, QObject, Signal

    class Probe(QObject):
        flag = Signal(bool)

    app = QCoreApplication([])
    probe = Probe()
    seen = [0]

    def slot(value):
        seen[0] += 1  # keeps no reference to what it was given

    probe.flag.connect(slot)
    before = sys.getrefcount(True), sys.getrefcount(False)
    for i in range({EMITS}):
        probe.flag.emit(i % 2 == 0)
    after = sys.getrefcount(True), sys.getrefcount(False)
    print(seen[0], before[0] - after[0], before[1] - after[1])
    """
)


def test_emitting_a_bool_signal_many_times_loses_no_reference_to_true() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, (
        f"the emit loop died (exit {result.returncode}): is PySide6 6.12.0 installed?\n"
        + result.stderr[-2000:]
    )
    seen, lost_true, lost_false = (int(x) for x in result.stdout.split())
    assert seen == EMITS
    assert abs(lost_true) < 10 and abs(lost_false) < 10, (lost_true, lost_false)
