"""The built bundle answers on its own: `make package`'s dist/archivist/archivist, run as a
user would, with nothing from the development environment to lean on.

Each command runs the real binary in a subprocess with a scratch ``ARCHIVIST_HOME``
and an environment holding only a plain ``PATH``, ``HOME`` and a locale: no
``PYTHONPATH``, ``VIRTUAL_ENV``, ``HF_HUB_OFFLINE`` or venv on the ``PATH``. The bundle
is built by `make package` (part of `make test`); without it these tests skip, except
under ``CI=true``, where a missing bundle is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from app.resources import APP_ID
from app.version import app_version

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "archivist" / "archivist"
APPDIR = ROOT / "build" / "appimage" / "Archivist.AppDir"
TIMEOUT_S = 240  # one command; a cold ingest loads torch and MiniLM, on two cores that may be busy

LIGHTHOUSE = "The Skerry lighthouse was first lit in 1844 by its keeper, Agnes Moray."
HARBOUR = "The harbour at Wick dries out completely at low spring tide."


@pytest.fixture(scope="module")
def bundle() -> Path:
    if not BUNDLE.is_file():
        message = f"{BUNDLE.relative_to(ROOT)} is missing: run `make package` first"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI builds it in `make test`)")
        pytest.skip(message)
    return BUNDLE


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "user"
    home.mkdir()
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ARCHIVIST_HOME": str(tmp_path / "archivist-home"),
    }


def run(args: list[str | Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, f"{args[1:]} exited {result.returncode}:\n{result.stderr}"
    return result


def test_bundle_reports_the_package_version(bundle: Path, clean_env: dict[str, str]) -> None:
    result = run([bundle, "--version"], clean_env)
    assert result.stdout.split() == ["archivist", app_version()]
    assert app_version() != "unknown"


@pytest.mark.timeout(3 * TIMEOUT_S)  # three cold starts of the bundle (ingest, ask, stats)
def test_bundle_ingests_a_folder_and_answers_with_a_citation(
    bundle: Path, clean_env: dict[str, str], tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "lighthouse.md").write_text(f"# Lighthouse notes\n\n{LIGHTHOUSE}\n", encoding="utf-8")
    (docs / "tides.txt").write_text(f"Tide tables\n\n{HARBOUR}\n", encoding="utf-8")

    ingest = json.loads(run([bundle, "ingest", docs, "--json"], clean_env).stdout)
    assert ingest["summary"]["added"] == 2, ingest
    assert ingest["summary"]["failed"] == 0, ingest

    questions = tmp_path / "questions.txt"
    questions.write_text(
        "When was the Skerry lighthouse first lit?\nWhere does the harbour dry out?\n",
        encoding="utf-8",
    )
    result = run([bundle, "ask", "--batch", questions, "--json"], clean_env)
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(answers) == 2, result.stdout
    for answer, (fact, source) in zip(
        answers, [("1844", "lighthouse.md"), ("Wick", "tides.txt")], strict=True
    ):
        assert not answer["abstained"], answer
        assert answer["answer"]
        quoted = [c for c in answer["citations"] if fact in (c["quote"] or c["text"])]
        assert quoted, f"no citation quotes {fact!r}: {answer['citations']}"
        assert Path(quoted[0]["source"]).name == source
    # No local model in a scratch data folder: the offline extractive provider answered.
    assert {a["provider"] for a in answers} == {"extractive"}

    # The embedding model and torch came along: every passage has its vector.
    stats = json.loads(run([bundle, "stats", "--json"], clean_env).stdout)
    kb = stats["knowledge_base"]
    assert kb["chunks"] >= 2
    assert kb["embeddings"] == kb["chunks"], kb


def test_bundle_carries_the_resources_app_resources_looks_for(bundle: Path) -> None:
    # app/resources.py looks in sys._MEIPASS/resources; PyInstaller's _MEIPASS is _internal/
    marker = Path("icons", "hicolor", "scalable", "apps", f"{APP_ID}.svg")
    assert (bundle.parent / "_internal" / "resources" / marker).is_file()
    assert (bundle.parent / "_internal" / "resources" / "styles").is_dir()


def test_appdir_runs_the_bundle_through_apprun(bundle: Path, clean_env: dict[str, str]) -> None:
    if not (APPDIR / "AppRun").is_file():
        pytest.skip("build/appimage/Archivist.AppDir is missing: run `make package`")
    desktop = (APPDIR / f"{APP_ID}.desktop").read_text(encoding="utf-8")
    assert f"Icon={APP_ID}" in desktop
    assert (APPDIR / f"{APP_ID}.png").is_file()
    result = run([APPDIR / "AppRun", "--version"], clean_env)
    assert result.stdout.split() == ["archivist", app_version()]


def test_appimage_reports_the_version(bundle: Path, clean_env: dict[str, str]) -> None:
    images = sorted((ROOT / "dist").glob("Archivist-*-x86_64.AppImage"))
    if not images:
        if os.environ.get("CI") == "true":
            pytest.fail("no AppImage in dist/: `make package` builds one")
        pytest.skip("no AppImage in dist/: run `make package`")
    assert images[-1].name == f"Archivist-{app_version()}-x86_64.AppImage"
    # extract-and-run needs no FUSE (containers and CI have none)
    env = {**clean_env, "APPIMAGE_EXTRACT_AND_RUN": "1"}
    result = run([images[-1], "--version"], env)
    assert result.stdout.split() == ["archivist", app_version()]


def test_the_bundle_carries_the_portable_llm_runtime_only(bundle: Path) -> None:
    # A llama-cpp-python built from source is compiled for the build machine's CPU:
    # in a bundle for other machines it would die with "illegal instruction".
    internal = bundle.parent / "_internal"
    assert (internal / "xllamacpp").is_dir()
    assert not (internal / "llama_cpp").exists()
