"""The one rule for user-supplied paths (core/security/paths.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import UsageError
from core.security.paths import checked_path, path_problem


def test_documents_and_folders_may_be_ingested(tmp_path: Path) -> None:
    doc = tmp_path / "notes.txt"
    doc.write_text("hello")
    assert path_problem(doc, "ingest") is None
    assert path_problem(tmp_path, "ingest") is None
    assert path_problem(tmp_path / "gone.txt", "ingest") is None  # the report says "not found"
    assert checked_path(str(doc), "ingest") == doc.resolve()


@pytest.mark.parametrize("raw", ["/proc/self/environ", "/sys/kernel", "/dev/zero", ""])
def test_pseudo_filesystems_and_empty_paths_are_refused_for_every_purpose(raw: str) -> None:
    for purpose in ("ingest", "watch", "open"):
        assert path_problem(raw, purpose) is not None  # type: ignore[arg-type]


def test_a_symlink_is_judged_by_its_target(tmp_path: Path) -> None:
    link = tmp_path / "innocent.txt"
    link.symlink_to("/proc/self/environ")
    with pytest.raises(UsageError, match="pseudo-filesystem"):
        checked_path(link, "ingest")


def test_a_fifo_is_not_a_document(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert "regular file" in (path_problem(fifo, "ingest") or "")
    assert path_problem(fifo, "open") is not None


def test_watched_folders_are_the_users_not_the_systems(tmp_path: Path) -> None:
    assert path_problem(tmp_path, "watch") is None
    assert "root of a filesystem" in (path_problem("/", "watch") or "")
    assert "system folder" in (path_problem("/etc", "watch") or "")
    assert "system folder" in (path_problem("/usr/share/doc", "watch") or "")
    missing = tmp_path / "usb-stick"
    assert "not an existing folder" in (path_problem(missing, "watch") or "")
    assert path_problem(missing, "watch", require_exists=False) is None


def test_only_existing_regular_files_open_in_a_viewer(tmp_path: Path) -> None:
    doc = tmp_path / "report.pdf"
    doc.write_bytes(b"%PDF-1.4")
    assert path_problem(doc, "open") is None
    assert path_problem(tmp_path, "open") is not None
    assert path_problem(tmp_path / "missing.pdf", "open") is not None
