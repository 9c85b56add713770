#!/usr/bin/env bash
# Build Archivist's AppImage type-2 runtime (packaging/appimage/runtime.c).
#
#   packaging/appimage/build-runtime.sh [OUT]    (default: build/appimage/runtime-x86_64)
#
# Needs a C compiler and zstd's static library and header (Debian: gcc libc6-dev
# libzstd-dev, in packaging/system-deps.sh). zstd is linked statically, glibc
# dynamically, so the runtime runs where only glibc is installed. After linking, the
# AppImage magic bytes 'A' 'I' 0x02 go to file offset 8 (the ELF identification's
# padding), which marks the file as a type-2 AppImage runtime.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$(dirname "$(dirname "$here")")/build/appimage/runtime-x86_64}"
CC="${CC:-cc}"

fail() { echo "build-runtime: $*" >&2; exit 1; }
command -v "$CC" >/dev/null 2>&1 || fail "no C compiler '$CC' (Debian: apt-get install gcc libc6-dev)"
zstd_a="$("$CC" -print-file-name=libzstd.a)"
[ -f "$zstd_a" ] || fail "no static libzstd.a for $CC (Debian: apt-get install libzstd-dev)"

mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# -s: no symbol table (the section headers stay, last in the file: the image follows them)
"$CC" -std=c11 -O2 -Wall -Wextra -D_FORTIFY_SOURCE=2 -fstack-protector-strong \
  -ffunction-sections -fdata-sections -o "$tmp" "$here/runtime.c" \
  -Wl,--gc-sections -Wl,-s "$zstd_a" \
  || fail "compiling $here/runtime.c failed"
printf 'AI\002' | dd of="$tmp" bs=1 seek=8 conv=notrunc status=none
mv "$tmp" "$out"
trap - EXIT
echo "build-runtime: $out ($(stat -c %s "$out") bytes)" >&2
