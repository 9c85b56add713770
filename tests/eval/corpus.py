"""Locate the installed HTML corpora of the frozen evaluation sets.

Each corpus is the html root folder of a Debian documentation package; the page paths in
the question files are relative to it. ``find_corpus`` returns ``None`` when the package
is not installed (``packaging/system-deps.sh test`` installs both).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Corpus:
    package: str  # the Debian package that ships the pages
    known_path: Path  # where Debian 12 installs the html root
    dpkg_suffix: str  # how the html root's path ends in `dpkg -L package`
    probe: str  # a page that must exist in the html root


CORPORA: dict[str, Corpus] = {
    "debian-handbook": Corpus(
        package="debian-handbook",
        known_path=Path("/usr/share/doc/debian-handbook/html/en-US"),
        dpkg_suffix="/html/en-US",
        probe="sect.apt-get.html",
    ),
    "python3.11-doc": Corpus(
        package="python3.11-doc",
        known_path=Path("/usr/share/doc/python3.11/html"),
        dpkg_suffix="/html",
        probe="library/functools.html",
    ),
}

# Other names people (and the question files) use for the same corpora.
ALIASES = {
    "debian_handbook": "debian-handbook",
    "dh": "debian-handbook",
    "python311": "python3.11-doc",
    "python": "python3.11-doc",
    "py": "python3.11-doc",
}


def _usable(folder: Path, corpus: Corpus) -> bool:
    return folder.is_dir() and (folder / corpus.probe).is_file()


def _from_dpkg(corpus: Corpus) -> Path | None:
    dpkg = shutil.which("dpkg")
    if dpkg is None:
        return None
    try:
        listing = subprocess.run(
            [dpkg, "-L", corpus.package],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if listing.returncode != 0:
        return None
    for line in listing.stdout.splitlines():
        if line.endswith(corpus.dpkg_suffix):
            folder = Path(line).resolve()
            if _usable(folder, corpus):
                return folder
    return None


def find_corpus(name: str) -> Path | None:
    """The html root folder of an installed corpus, or None when it is not installed.

    ``name`` is a key of ``CORPORA`` (the Debian package name) or one of ``ALIASES``.
    """
    key = ALIASES.get(name, name)
    corpus = CORPORA.get(key)
    if corpus is None:
        raise KeyError(f"unknown corpus {name!r}; known: {sorted(CORPORA)}")
    if _usable(corpus.known_path, corpus):
        return corpus.known_path
    return _from_dpkg(corpus)
