"""Our AppImage type-2 runtime (packaging/appimage/runtime.c), built and run for real.

The module builds the runtime with packaging/appimage/build-runtime.sh into a scratch
folder, packs a small AppDir with ``mksquashfs -comp zstd`` as packaging/build-bundle.sh
does (AppRun, an executable, symlinks, nested and non-default-mode folders, files
larger than one 128 KiB SquashFS block, compressible and not, and tiny files that
land in a fragment), puts the runtime in front of it and runs the result as a user
would, with a clean environment and a scratch cache. Without a C compiler, zstd's
static library or mksquashfs the tests skip, except under ``CI=true`` where that is
a failure.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import in_ci

ROOT = Path(__file__).resolve().parents[2]
BUILD_RUNTIME = ROOT / "packaging" / "appimage" / "build-runtime.sh"
TIMEOUT_S = 120
BLOCK = 128 * 1024  # mksquashfs's default block size
CACHE_SUBDIR = "appimage-extract-and-run"

APPRUN = """#!/bin/sh
# Prints what the runtime handed over, then exits with $EXIT_WITH.
for a in "$@"; do printf 'arg=<%s>\\n' "$a"; done
printf 'APPDIR=%s\\nAPPIMAGE=%s\\nARGV0=%s\\nOWD=%s\\n' "$APPDIR" "$APPIMAGE" "$ARGV0" "$OWD"
if [ -e "$APPDIR/sentinel" ]; then echo reused; fi
"$APPDIR/usr/bin/tool"
exit "${EXIT_WITH:-0}"
"""


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the AppImage runtime must be built and tested)")
    pytest.skip(reason)


@dataclass(frozen=True)
class Images:
    runtime: Path
    appdir: Path
    appimage: Path


def _mksquashfs(appdir: Path, image: Path) -> None:
    subprocess.run(
        ["mksquashfs", appdir, image, "-root-owned", "-noappend", "-comp", "zstd", "-quiet"],
        check=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    )


def _make_appimage(runtime: Path, appdir: Path, out: Path) -> Path:
    squashfs = out.with_suffix(".squashfs")
    _mksquashfs(appdir, squashfs)
    out.write_bytes(runtime.read_bytes() + squashfs.read_bytes())
    out.chmod(0o755)
    return out


def _make_appdir(appdir: Path) -> None:
    rng = random.Random(20261202)
    (appdir / "usr" / "bin").mkdir(parents=True)
    (appdir / "usr" / "lib").mkdir()
    (appdir / "a" / "b" / "c").mkdir(parents=True)
    (appdir / "AppRun").write_text(APPRUN, encoding="utf-8")
    (appdir / "AppRun").chmod(0o755)
    tool = appdir / "usr" / "bin" / "tool"
    tool.write_text("#!/bin/sh\necho tool ran\n", encoding="utf-8")
    tool.chmod(0o755)
    # incompressible, over two blocks: stored blocks, and its tail in a fragment
    (appdir / "usr" / "lib" / "random.bin").write_bytes(rng.randbytes(2 * BLOCK + 43_211))
    # compressible, over one block: zstd blocks
    text = "".join(f"line {i}: the keeper lit the lamp at dusk\n" for i in range(9000))
    (appdir / "usr" / "lib" / "notes.txt").write_text(text, encoding="utf-8")
    (appdir / "a" / "b" / "c" / "tiny").write_bytes(b"hi\n")  # a fragment
    (appdir / "a" / "b" / "c" / "tiny").chmod(0o640)
    (appdir / "a" / "b").chmod(0o750)
    (appdir / "icon.png").write_bytes(rng.randbytes(700))
    (appdir / ".DirIcon").symlink_to("icon.png")
    (appdir / "usr" / "lib" / "libtool.so").symlink_to("../bin/tool")
    (appdir / "dangling").symlink_to("does/not/exist")
    (appdir / "empty").mkdir()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    for tool, package in (("cc", "gcc libc6-dev"), ("mksquashfs", "squashfs-tools")):
        if shutil.which(tool) is None:
            _unavailable(f"no {tool} to build or pack the AppImage (Debian: {package})")
    work = tmp_path_factory.mktemp("appimage")
    runtime = work / "runtime-x86_64"
    built = subprocess.run(
        ["bash", BUILD_RUNTIME, runtime], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    if built.returncode != 0 and "libzstd.a" in built.stderr:
        _unavailable(f"cannot build the runtime: {built.stderr.strip()}")
    assert built.returncode == 0, f"build-runtime.sh failed:\n{built.stderr}"
    appdir = work / "Test.AppDir"
    _make_appdir(appdir)
    appimage = _make_appimage(runtime, appdir, work / "Test-x86_64.AppImage")
    return Images(runtime, appdir, appimage)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir()
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "LANG": "C.UTF-8",
    }


def run(
    args: list[str | Path], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def reported(stdout: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    return {k: v for k, v in pairs if k != "arg"}


def args_seen(stdout: str) -> list[str]:
    return [line[5:-1] for line in stdout.splitlines() if line.startswith("arg=<")]


def cache_entries(env: dict[str, str]) -> list[str]:
    root = Path(env["XDG_CACHE_HOME"]) / CACHE_SUBDIR
    return sorted(os.listdir(root)) if root.is_dir() else []


def squashfs_start(appimage: Path) -> int:
    result = run([appimage, "--appimage-offset"], {"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_the_runtime_is_an_elf_marked_as_an_appimage_type_2(images: Images) -> None:
    head = images.appimage.read_bytes()[:16]
    assert head[:4] == b"\x7fELF"
    assert head[8:11] == b"AI\x02"


def test_the_image_starts_where_the_runtime_ends(images: Images) -> None:
    offset = squashfs_start(images.appimage)
    assert offset == images.runtime.stat().st_size
    with images.appimage.open("rb") as f:
        f.seek(offset)
        assert f.read(4) == b"hsqs"  # the SquashFS magic


def test_it_runs_apprun_with_the_arguments_environment_and_exit_code(
    images: Images, env: dict[str, str], tmp_path: Path
) -> None:
    caller_dir = tmp_path / "somewhere else"
    caller_dir.mkdir()
    args = ["one", "two words", "", "--not-ours", "*"]
    result = run([images.appimage, *args], {**env, "EXIT_WITH": "7"}, cwd=caller_dir)
    assert result.returncode == 7, result.stderr
    assert args_seen(result.stdout) == args
    seen = reported(result.stdout)
    cache = Path(env["XDG_CACHE_HOME"]) / CACHE_SUBDIR
    assert Path(seen["APPDIR"]).parent == cache
    assert seen["APPIMAGE"] == str(images.appimage.resolve())
    assert seen["ARGV0"] == str(images.appimage)
    assert seen["OWD"] == str(caller_dir)
    assert "tool ran" in result.stdout  # an executable inside the image runs
    assert "reused" not in result.stdout


def test_extract_and_run_can_be_asked_for_explicitly(images: Images, env: dict[str, str]) -> None:
    by_option = run([images.appimage, "--appimage-extract-and-run", "x", "y"], env)
    by_env = run([images.appimage, "x", "y"], {**env, "APPIMAGE_EXTRACT_AND_RUN": "1"})
    for result in (by_option, by_env):
        assert result.returncode == 0, result.stderr
        assert args_seen(result.stdout) == ["x", "y"]
    assert reported(by_option.stdout)["APPDIR"] == reported(by_env.stdout)["APPDIR"]


def test_a_second_run_reuses_the_extracted_folder(images: Images, env: dict[str, str]) -> None:
    first = run([images.appimage], env)
    assert first.returncode == 0, first.stderr
    appdir = Path(reported(first.stdout)["APPDIR"])
    (appdir / "sentinel").write_text("left by the test", encoding="utf-8")
    second = run([images.appimage], env)
    assert second.returncode == 0, second.stderr
    assert reported(second.stdout)["APPDIR"] == str(appdir)
    assert "reused" in second.stdout
    assert cache_entries(env) == [appdir.name]  # no temporary folder left behind


def test_a_killed_extraction_is_never_used_and_its_leftover_goes(
    images: Images, env: dict[str, str]
) -> None:
    first = run([images.appimage], env)
    assert first.returncode == 0, first.stderr
    appdir = Path(reported(first.stdout)["APPDIR"])
    # As a run killed while extracting leaves it: a temporary folder named after the
    # image and the dead process's id, half full, and no finished folder.
    shutil.rmtree(appdir)
    finished = subprocess.Popen(["true"])
    finished.wait()  # its id is no running process's now
    leftover = appdir.parent / f".{appdir.name}.tmp.{finished.pid}"
    (leftover / "usr").mkdir(parents=True)
    (leftover / "usr" / "half-written").write_bytes(b"\0" * 100)
    again = run([images.appimage, "after"], env)
    assert again.returncode == 0, again.stderr
    assert args_seen(again.stdout) == ["after"]
    assert reported(again.stdout)["APPDIR"] == str(appdir)
    assert cache_entries(env) == [appdir.name]
    assert (appdir / "usr" / "lib" / "notes.txt").read_bytes() == (
        images.appdir / "usr" / "lib" / "notes.txt"
    ).read_bytes()


def test_a_changed_image_gets_its_own_folder(
    images: Images, env: dict[str, str], tmp_path: Path
) -> None:
    appdir = tmp_path / "Changed.AppDir"
    shutil.copytree(images.appdir, appdir, symlinks=True)
    # the cache key covers the image's metadata (names, sizes, modes, times, block
    # sizes), not every data byte: a changed size is a changed image
    (appdir / "a" / "b" / "c" / "tiny").write_bytes(b"changed\n")
    changed = _make_appimage(images.runtime, appdir, tmp_path / "Changed.AppImage")
    folders = [reported(run([image], env).stdout)["APPDIR"] for image in (images.appimage, changed)]
    assert folders[0] != folders[1]
    assert (Path(folders[1]) / "a" / "b" / "c" / "tiny").read_bytes() == b"changed\n"


def _tree(root: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every entry below root: its st_mode (type and permissions) and content."""
    entries: dict[str, tuple[int, bytes | str | None]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            content: bytes | str | None = None
            if stat.S_ISLNK(mode):
                content = os.readlink(path)
            elif stat.S_ISREG(mode):
                content = path.read_bytes()
            entries[str(path.relative_to(root))] = (mode, content)
    return entries


def test_extract_reproduces_the_appdir_byte_for_byte(
    images: Images, env: dict[str, str], tmp_path: Path
) -> None:
    result = run([images.appimage, "--appimage-extract"], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    extracted = tmp_path / "squashfs-root"
    expected = _tree(images.appdir)
    assert _tree(extracted) == expected
    assert len(expected) == 16
    assert stat.S_IMODE((extracted / "a" / "b").stat().st_mode) == 0o750
    assert (extracted / "usr" / "lib" / "random.bin").stat().st_size > 2 * BLOCK
    assert not cache_entries(env)  # extracting does not touch the cache


def test_extract_with_a_pattern_takes_only_what_matches(
    images: Images, env: dict[str, str], tmp_path: Path
) -> None:
    result = run([images.appimage, "--appimage-extract", "usr/lib/*.txt"], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    files = sorted(
        str(p.relative_to(tmp_path / "squashfs-root"))
        for p in (tmp_path / "squashfs-root").rglob("*")
        if not p.is_dir()
    )
    assert files == ["usr/lib/notes.txt"]
    notes = (tmp_path / "squashfs-root" / "usr" / "lib" / "notes.txt").read_bytes()
    assert notes == (images.appdir / "usr" / "lib" / "notes.txt").read_bytes()


def test_the_runtime_alone_says_no_image_is_appended(images: Images, env: dict[str, str]) -> None:
    result = run([images.runtime], env)
    assert result.returncode != 0
    assert "no SquashFS image is appended" in result.stderr
    assert not cache_entries(env)


def test_a_truncated_appimage_is_a_clear_error(
    images: Images, env: dict[str, str], tmp_path: Path
) -> None:
    data = images.appimage.read_bytes()
    truncated = tmp_path / "truncated.AppImage"
    truncated.write_bytes(data[: images.runtime.stat().st_size + 150_000])
    truncated.chmod(0o755)
    result = run([truncated], env)
    assert result.returncode != 0
    assert "truncated" in result.stderr
    assert not cache_entries(env)


def test_a_corrupt_image_is_a_clear_error_and_leaves_no_folder(
    images: Images, env: dict[str, str], tmp_path: Path
) -> None:
    data = bytearray(images.appimage.read_bytes())
    start = squashfs_start(images.appimage)
    inode_table = struct.unpack_from("<Q", data, start + 64)[0]  # superblock field
    for i in range(start + inode_table + 2, start + inode_table + 40):
        data[i] ^= 0x5A
    corrupt = tmp_path / "corrupt.AppImage"
    corrupt.write_bytes(bytes(data))
    corrupt.chmod(0o755)
    result = run([corrupt], env)
    assert result.returncode != 0
    assert "corrupt" in result.stderr
    assert result.stdout == ""
    assert cache_entries(env) == []  # the half-extracted temporary folder is gone


def test_an_unwritable_cache_is_a_clear_error(
    images: Images, env: dict[str, str], tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "cache-is-a-file"
    not_a_folder.write_text("", encoding="utf-8")
    result = run([images.appimage], {**env, "XDG_CACHE_HOME": str(not_a_folder)})
    assert result.returncode != 0
    assert "extraction cache" in result.stderr
    assert "XDG_CACHE_HOME" in result.stderr


def test_an_image_without_apprun_is_a_clear_error(
    images: Images, env: dict[str, str], tmp_path: Path
) -> None:
    appdir = tmp_path / "NoAppRun.AppDir"
    appdir.mkdir()
    (appdir / "readme").write_text("no entry point here\n", encoding="utf-8")
    image = _make_appimage(images.runtime, appdir, tmp_path / "NoAppRun.AppImage")
    result = run([image], env)
    assert result.returncode == 127
    assert "no AppRun" in result.stderr
    assert not cache_entries(env)  # nothing extracted for an image that cannot run


def test_unknown_runtime_options_are_refused(images: Images, env: dict[str, str]) -> None:
    result = run([images.appimage, "--appimage-mount"], env)
    assert result.returncode != 0
    assert "--appimage-mount" in result.stderr
    help_ = run([images.appimage, "--appimage-help"], env)
    assert help_.returncode == 0
    assert "--appimage-extract" in help_.stdout


def test_the_runtime_needs_only_glibc(images: Images, tmp_path: Path) -> None:
    dynamic = run(["readelf", "-d", images.runtime], {"PATH": "/usr/bin:/bin"})
    assert dynamic.returncode == 0, dynamic.stderr
    needed = [
        line.split("[")[1].rstrip("]") for line in dynamic.stdout.splitlines() if "NEEDED" in line
    ]
    assert needed == ["libc.so.6"]
    # ldd refuses the AppImage magic in the ELF padding (glibc checks it is zero), so
    # ask about the runtime as linked: the same file with the padding cleared.
    plain = tmp_path / "runtime-as-linked"
    data = bytearray(images.runtime.read_bytes())
    data[8:11] = b"\0\0\0"
    plain.write_bytes(bytes(data))
    plain.chmod(0o755)
    ldd = run(["ldd", plain], {"PATH": "/usr/bin:/bin"})
    assert ldd.returncode == 0, ldd.stderr
    assert "libc.so.6" in ldd.stdout
    assert "zstd" not in ldd.stdout
    assert "squashfs" not in ldd.stdout
