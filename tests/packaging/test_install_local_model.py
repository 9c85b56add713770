"""packaging/install-local-model.sh: which llama.cpp runtime it installs, and why.

The script is run for real with ``--plan`` (it decides, says why on stderr, prints
the runtime and installs nothing) under a PATH that holds exactly the tools a
machine has: the shell's own utilities, plus ``cmake`` and ``c++`` when the case
says so. Installing for real takes a minute and half a gigabyte (measured by hand:
README, "No compiler"), so it is not repeated here.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "packaging" / "install-local-model.sh"
# What the script itself runs in --plan mode.
SHELL_TOOLS = ("bash", "dirname", "cat")


def _path_with(tmp_path: Path, *extra: str) -> str:
    """A folder for PATH with the shell tools, and ``extra`` as stand-in programs
    (``--plan`` only looks them up; it never runs them)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in SHELL_TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    for tool in extra:
        program = bin_dir / tool
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return str(bin_dir)


def _plan(path: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": path, "HOME": os.environ.get("HOME", "/root"), **env}
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run(
        [bash, str(SCRIPT), "--plan", ".venv/bin/pip"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("tools", [(), ("cmake", "c++")])
@pytest.mark.parametrize("ci", ["true", ""])
@pytest.mark.parametrize("choice", [None, "auto", "prebuilt"])
def test_the_prebuilt_runtime_is_the_default_with_or_without_a_compiler(
    tmp_path: Path, tools: tuple[str, ...], ci: str, choice: str | None
) -> None:
    env = {"CI": ci} | ({"ARCHIVIST_LLM_RUNTIME": choice} if choice is not None else {})
    result = _plan(_path_with(tmp_path, *tools), **env)
    assert (result.returncode, result.stdout) == (0, "prebuilt\n"), result.stderr
    assert "xllamacpp" in result.stderr


def test_archivist_llm_runtime_source_builds_llama_cpp_python_with_a_compiler(
    tmp_path: Path,
) -> None:
    result = _plan(_path_with(tmp_path, "cmake", "c++"), ARCHIVIST_LLM_RUNTIME="source")
    assert (result.returncode, result.stdout) == (0, "source\n"), result.stderr
    assert "built from source" in result.stderr


@pytest.mark.parametrize(("ci", "code"), [("true", 1), ("", 0)])
def test_archivist_llm_runtime_source_without_a_compiler_installs_nothing(
    tmp_path: Path, ci: str, code: int
) -> None:
    result = _plan(_path_with(tmp_path), CI=ci, ARCHIVIST_LLM_RUNTIME="source")
    assert result.returncode == code
    assert result.stdout == ""
    assert "needs cmake c++" in result.stderr


def test_an_unknown_runtime_choice_is_named(tmp_path: Path) -> None:
    result = _plan(_path_with(tmp_path, "cmake", "c++"), ARCHIVIST_LLM_RUNTIME="gpu")
    assert result.stdout == ""
    assert "must be auto, prebuilt or source (not 'gpu')" in result.stderr


def test_both_runtime_extras_install_the_same_model_and_the_tested_xllamacpp() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    prebuilt, source = extras["local-llm"], extras["local-llm-source"]
    assert [r for r in source if not r.startswith("llama-cpp-python")] == [
        r for r in prebuilt if not r.startswith("xllamacpp")
    ]
    xllamacpp = [r for r in prebuilt if r.startswith("xllamacpp")]
    assert xllamacpp == [r for r in extras["dev"] if r.startswith("xllamacpp")]
    assert xllamacpp[0].startswith("xllamacpp==")  # pinned exactly
