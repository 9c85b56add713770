#!/usr/bin/env bash
# Build the self-contained Linux bundle and its AppImage (`make package`; README "Package").
#
#   packaging/build-bundle.sh [PATH/TO/VENV/bin]        (default: .venv/bin)
#
# Produces
#   dist/archivist/archivist                     the one-folder bundle (PyInstaller,
#                                                packaging/archivist.spec), run in place
#   build/appimage/Archivist.AppDir/             the AppDir: AppRun, desktop entry, icon,
#                                                metainfo, the bundle in usr/lib/archivist
#   build/appimage/Archivist.squashfs            the AppDir as a SquashFS image
#   dist/Archivist-<version>-x86_64.AppImage     the AppImage: an AppImage type-2 runtime
#                                                followed by the SquashFS image
#
# The runtime (the small ELF program at the front of every AppImage that extracts
# and runs the image behind it) is in no package reachable from here (PyPI,
# Debian 12, npm), so it is our own: packaging/appimage/runtime.c, compiled by
# packaging/appimage/build-runtime.sh into build/appimage/runtime-x86_64 (needs gcc,
# libc6-dev, libzstd-dev). It is built first, so a missing compiler fails the build
# at once, not after the bundle. Overrides:
#   APPIMAGE_RUNTIME=/path/to/runtime-x86_64     another type-2 runtime file, or
#   appimagetool on the PATH                     builds the AppImage from the AppDir.
#
# Rebuilds from scratch each time (the same inputs give the same bundle); the
# Makefile skips the call when nothing the bundle is made from has changed.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${1:-.venv/bin}"
APPDIR=build/appimage/Archivist.AppDir
IMAGE=build/appimage/Archivist.squashfs
APP_ID=io.archivist.Archivist

started=$(date +%s)
RUNTIME="${APPIMAGE_RUNTIME:-}"
if [ -z "$RUNTIME" ] && ! command -v appimagetool >/dev/null 2>&1; then
  rm -rf build/appimage
  RUNTIME=build/appimage/runtime-x86_64
  packaging/appimage/build-runtime.sh "$RUNTIME" \
    || { echo "appimage: cannot build the AppImage runtime (above); nothing was packaged" >&2; exit 1; }
fi

# --clean: no stale analysis from another venv; the work folder stays under build/
"$BIN/pyinstaller" --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/archivist.spec

# torch's two big libraries ship with their symbol tables (~90 MB); the dynamic
# symbols they need at run time are kept by --strip-unneeded.
for lib in dist/archivist/_internal/torch/lib/libtorch_cpu.so \
           dist/archivist/_internal/torch/lib/libtorch_python.so; do
  if [ -f "$lib" ]; then strip --strip-unneeded "$lib"; fi
done

version=$(dist/archivist/archivist --version | awk '{print $2}')
echo "bundle: dist/archivist ($(du -sh dist/archivist | cut -f1)), archivist $version," \
  "built in $(( $(date +%s) - started )) s" >&2

# ---------------------------------------------------------------- AppDir
rm -rf "$APPDIR" "$IMAGE"
mkdir -p "$APPDIR/usr/lib" "$APPDIR/usr/share/metainfo" "$APPDIR/usr/share/applications"
cp -al dist/archivist "$APPDIR/usr/lib/archivist"  # hard links: no second GB on disk
cat > "$APPDIR/AppRun" <<'EOF'
#!/bin/sh
# The AppImage's entry: run the bundled archivist (the window when given no command).
here="$(dirname "$(readlink -f "$0")")"
exec "$here/usr/lib/archivist/archivist" "$@"
EOF
chmod +x "$APPDIR/AppRun"
# Inside an AppImage `archivist` is not on the PATH: no TryExec (desktop integration
# tools point Exec at the AppImage itself).
grep -v '^TryExec=' "resources/$APP_ID.desktop" > "$APPDIR/$APP_ID.desktop"
cp "$APPDIR/$APP_ID.desktop" "$APPDIR/usr/share/applications/"
cp "resources/$APP_ID.metainfo.xml" "$APPDIR/usr/share/metainfo/"
cp "resources/icons/hicolor/256x256/apps/$APP_ID.png" "$APPDIR/$APP_ID.png"
cp -r resources/icons "$APPDIR/usr/share/"
ln -sf "$APP_ID.png" "$APPDIR/.DirIcon"

mksquashfs "$APPDIR" "$IMAGE" -root-owned -noappend -comp zstd -Xcompression-level 9 -quiet >/dev/null
echo "appimage: $APPDIR and $IMAGE ($(du -sh "$IMAGE" | cut -f1))" >&2

# ---------------------------------------------------------------- AppImage
appimage="dist/Archivist-$version-x86_64.AppImage"
rm -f dist/Archivist-*-x86_64.AppImage
if [ -n "$RUNTIME" ]; then
  cat "$RUNTIME" "$IMAGE" > "$appimage"
  chmod +x "$appimage"
else
  ARCH=x86_64 appimagetool --no-appstream "$APPDIR" "$appimage" >&2
fi
echo "appimage: $appimage ($(du -sh "$appimage" | cut -f1))" >&2
