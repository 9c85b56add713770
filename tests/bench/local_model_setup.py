"""Set-up time of the local model from a fresh venv: the prebuilt runtime or the source build.

    .venv/bin/python tests/bench/local_model_setup.py [--runtime prebuilt|source] [--json]

Runs ``packaging/install-local-model.sh`` as ``make run`` does, into a new venv in a
temporary folder, with pip's cache off (``PIP_NO_CACHE_DIR=1``: every wheel is
downloaded again and llama-cpp-python is compiled again), and a scratch
``ARCHIVIST_HOME`` for the assembled model. Only the local-model step is timed:
the new venv sees the project's other dependencies (torch, Qt, ...) through a
``.pth`` file naming a folder of links to this venv's packages, leaving out the
runtimes, the model parts and Archivist itself, which the script installs.

``--runtime prebuilt`` (the default set-up) runs the script with a PATH that has
no cmake and no C++ compiler, as on a machine without them; ``--runtime source``
(``ARCHIVIST_LLM_RUNTIME=source``) runs it with the normal PATH (a 5-10 minute
compile on two cores: run it when the machine is quiet). The 1-minute load average before and
after is printed beside the time, since others may share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "packaging" / "install-local-model.sh"
# What the script installs itself, so the new venv must not see it already there.
INSTALLED_BY_THE_SCRIPT = ("xllamacpp", "llama_cpp", "pandas_sns", "archivist", "__editable__")
# The tools the script runs besides pip and python (no cmake, no compiler).
SHELL_TOOLS = ("bash", "sh", "dirname", "cat", "env", "uname", "rm", "mkdir", "cp", "mv")


def _shared_site(into: Path) -> Path:
    """A folder of links to this venv's packages, less what the script installs."""
    site = into / "site"
    site.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(INSTALLED_BY_THE_SCRIPT):
            (site / entry.name).symlink_to(entry)
    return site


def _no_compiler_path(into: Path) -> str:
    bin_dir = into / "bin-no-compiler"
    bin_dir.mkdir()
    for tool in SHELL_TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def measure(runtime: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="archivist-setup-") as tmp:
        work = Path(tmp)
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pth = next((venv / "lib").glob("python3*/site-packages")) / "zz_archivist_deps.pth"
        pth.write_text(f"{_shared_site(work)}\n", encoding="utf-8")
        path = _no_compiler_path(work) if runtime == "prebuilt" else os.environ["PATH"]
        env = {
            "HOME": os.environ.get("HOME", "/root"),
            "PATH": path,
            "PIP_NO_CACHE_DIR": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "HF_HUB_OFFLINE": "1",
            "ARCHIVIST_HOME": str(work / "home"),
            "ARCHIVIST_LLM_RUNTIME": runtime,
        }
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run(
            ["bash", str(SCRIPT), str(venv / "bin" / "pip")],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - start
        stamp = venv / ".installed-local-llm"
        models = list((work / "home" / "models").glob("*.gguf"))
        said = [line for line in done.stderr.splitlines() if line.startswith("local model:")]
        return {
            "runtime_asked": runtime,
            "runtime_installed": stamp.read_text().strip() if stamp.exists() else None,
            "exit_code": done.returncode,
            "seconds": round(seconds, 1),
            "model_mb": round(sum(m.stat().st_size for m in models) / 1e6),
            "load_avg_1m_before": round(load_before, 2),
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
            "script_said": said,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runtime", choices=("prebuilt", "source"), default="prebuilt")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.runtime)
    if args.json:
        print(json.dumps(result))
        return
    for line in result["script_said"]:  # type: ignore[union-attr]
        print(f"  {line}", file=sys.stderr)
    print(
        f"{result['runtime_installed']} runtime + {result['model_mb']} MB model: "
        f"{result['seconds']} s from a fresh venv (exit {result['exit_code']}; load average "
        f"{result['load_avg_1m_before']} -> {result['load_avg_1m_after']} "
        f"on {result['cpus']} CPUs)"
    )


if __name__ == "__main__":
    main()
