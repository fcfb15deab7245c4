#!/bin/bash
# Install the build tree into a temporary DESTDIR and use the installed
# files as a packaged system would. The checks: every file lands where Debian
# expects it, a C program builds against the installed pkg-config file and
# runs against the installed library, Python loads the installed typelib,
# and the installed tool runs.
#
# Needs HEXZ_BUILD_ROOT (set by meson test) and meson on PATH.

set -u

build=${HEXZ_BUILD_ROOT:?HEXZ_BUILD_ROOT must point at the build tree}
python=/usr/bin/python3

count=0
failed=0

ok () {
  count=$((count + 1))
  echo "ok $count - $1"
}

not_ok () {
  count=$((count + 1))
  failed=$((failed + 1))
  echo "not ok $count - $1"
}

skip () {
  count=$((count + 1))
  echo "ok $count - $1 # SKIP $2"
}

# Report one check from the exit status of the command that follows the
# description. The command's output goes to the log as TAP comments.
check () {
  local description=$1
  shift
  local output
  if output=$("$@" 2>&1); then
    ok "$description"
  else
    not_ok "$description"
  fi
  if [ -n "$output" ]; then
    printf '%s\n' "$output" | sed 's/^/# /'
  fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/hexz-test-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
destdir=$work/root

echo "1..17"

# Where meson installs each kind of file, from the build's own options.
eval "$(meson introspect --buildoptions "$build" | "$python" -c '
import json, shlex, sys
options = {o["name"]: o["value"] for o in json.load(sys.stdin)}
prefix = options["prefix"]
for name in ("bindir", "libdir", "includedir", "datadir", "mandir", "localedir"):
    value = options[name]
    if not value.startswith("/"):
        value = prefix + "/" + value
    print(f"{name}={shlex.quote(value)}")
print(f"prefix={shlex.quote(prefix)}")
')"

check "meson install --destdir" \
  meson install -C "$build" --no-rebuild --quiet --destdir "$destdir"

root_libdir=$destdir$libdir

check "shared library with its soname link" \
  test -f "$root_libdir/libhexz-glib-1.so.0" -a -L "$root_libdir/libhexz-glib-1.so"
check "public headers and the generated enum header" \
  test -f "$destdir$includedir/hexz-glib-1/hexz-glib/hexz.h" \
    -a -f "$destdir$includedir/hexz-glib-1/hexz-glib/hexz-enum-types.h"
check "pkg-config file" test -f "$root_libdir/pkgconfig/hexz-glib-1.pc"
check "hexz-snap tool" test -x "$destdir$bindir/hexz-snap"
check "hexz-snap(1) manual page" test -f "$destdir$mandir/man1/hexz-snap.1"
check "German message catalog" \
  test -f "$destdir$localedir/de/LC_MESSAGES/hexz-glib-1.mo"

# Every file in meson's list of installed files exists.
check "every file listed by meson introspect --installed" \
  "$python" -c '
import json, os, sys
destdir = sys.argv[1]
missing = [path for path in json.load(sys.stdin).values()
           if not os.path.lexists(destdir + path)]
for path in missing:
    print("missing:", path)
sys.exit(1 if missing else 0)
' "$destdir" < <(meson introspect --installed "$build")

# Optional parts: present in the install exactly when the build made them.
if [ -f "$build/hexz-glib/Hexz-1.typelib" ]; then
  check "GIR and typelib" \
    test -f "$destdir$datadir/gir-1.0/Hexz-1.gir" \
      -a -f "$root_libdir/girepository-1.0/Hexz-1.typelib"
else
  skip "GIR and typelib" "introspection is disabled in this build"
fi

if [ -f "$build/tools/hexz-plugin.so" ]; then
  plugindir=$(pkg-config --variable=plugindir nbdkit 2>/dev/null)
  check "nbdkit plugin in nbdkit's plugin folder" \
    test -n "$plugindir" -a -f "$destdir$plugindir/hexz-plugin.so"
else
  skip "nbdkit plugin in nbdkit's plugin folder" "the plugin is not built"
fi

if [ -d "$build/doc/hexz-glib-1" ]; then
  check "API reference" test -f "$destdir$datadir/doc/hexz-glib-1/index.html"
else
  skip "API reference" "the API reference is not built"
fi

# The manual page must render without warnings.
check "manual page renders without warnings" bash -c '
  warnings=$(groff -man -Tutf8 -ww -z "$1" 2>&1)
  [ -z "$warnings" ] || { printf "%s\n" "$warnings"; exit 1; }' _ "$destdir$mandir/man1/hexz-snap.1"

# Build a C program against the installed files. The .pc file names the
# final prefix, so a copy of it is pointed at the DESTDIR tree. The
# dependencies (GLib, json-glib) still come from the system.
mkdir -p "$work/pkgconfig"
sed "s|^prefix=.*|prefix=$destdir$prefix|" "$root_libdir/pkgconfig/hexz-glib-1.pc" \
  > "$work/pkgconfig/hexz-glib-1.pc"

cat > "$work/program.c" <<'EOF'
#include <hexz-glib/hexz.h>

int
main (int argc, char **argv)
{
  g_autoptr(HexzSnapshotWriter) writer = NULL;
  g_autoptr(HexzSnapshot) snapshot = NULL;
  g_autoptr(GBytes) data = NULL;
  g_autoptr(GBytes) read_back = NULL;
  g_autoptr(GError) error = NULL;
  static const char text[] = "installed hexz-glib";

  data = g_bytes_new_static (text, sizeof text);

  writer = hexz_snapshot_writer_new_for_path (argv[1]);
  if (!hexz_snapshot_writer_begin_stream (writer, HEXZ_STREAM_DISK, sizeof text, &error) ||
      !hexz_snapshot_writer_write_bytes (writer, data, NULL, &error) ||
      !hexz_snapshot_writer_end_stream (writer, NULL, &error) ||
      !hexz_snapshot_writer_close (writer, NULL, &error))
    goto failed;

  snapshot = hexz_snapshot_open_path (argv[1], NULL, &error);
  if (snapshot == NULL)
    goto failed;

  read_back = hexz_snapshot_read_bytes (snapshot, HEXZ_STREAM_DISK, 0, sizeof text, NULL, &error);
  if (read_back == NULL)
    goto failed;

  if (!g_bytes_equal (data, read_back))
    {
      g_printerr ("The disk stream read back differs from what was written\n");
      return 1;
    }

  g_print ("%s\n", hexz_codec_to_string (HEXZ_CODEC_ZSTD));
  return 0;

failed:
  g_printerr ("%s\n", error->message);
  return 1;
}
EOF

# The C example of the "Take a snapshot" page, with the include the page
# names.
source_root=$(cd "${G_TEST_SRCDIR:-$(dirname "$0")}/.." && pwd)
{
  echo "#include <hexz-glib/hexz.h>"
  sed -n '/^```c$/,/^```$/{/^```/d;p}' "$source_root/doc/take-a-snapshot.md"
} > "$work/doc-example.c"

export PKG_CONFIG_PATH=$work/pkgconfig
check "C program builds against the installed pkg-config file" bash -c '
  cc -o "$1/program" "$1/program.c" $(pkg-config --cflags --libs hexz-glib-1)' _ "$work"
check "the C example of take-a-snapshot.md builds without warnings" bash -c '
  grep -q hexz_capture_run_async "$1/doc-example.c" &&
  cc -Wall -Werror -o "$1/doc-example" "$1/doc-example.c" $(pkg-config --cflags --libs hexz-glib-1)' \
  _ "$work"
unset PKG_CONFIG_PATH

# Only the installed library may be found from here on.
export LD_LIBRARY_PATH=$root_libdir
unset GI_TYPELIB_PATH

# In a build with AddressSanitizer the uninstrumented program needs the
# runtime preloaded to load the instrumented library.
check "C program runs against the installed library" bash -c '
  LD_PRELOAD=${HEXZ_ASAN_RUNTIME:-} "$1/program" "$1/program.hxz" &&
  ldd "$1/program" | grep -F "$2/libhexz-glib-1.so.0"' _ "$work" "$root_libdir"

check "installed hexz-snap runs against the installed library" bash -c '
  "$1" --help > /dev/null &&
  ldd "$1" | grep -F "$2/libhexz-glib-1.so.0"' _ "$destdir$bindir/hexz-snap" "$root_libdir"

if [ -f "$root_libdir/girepository-1.0/Hexz-1.typelib" ]; then
  export GI_TYPELIB_PATH=$root_libdir/girepository-1.0
  # With AddressSanitizer the interpreter needs the runtime preloaded too,
  # and runs without leak detection: CPython does not free everything at
  # exit.
  python_command=("$python")
  if [ -n "${HEXZ_ASAN_RUNTIME:-}" ]; then
    python_command=(env "LD_PRELOAD=$HEXZ_ASAN_RUNTIME" "ASAN_OPTIONS=detect_leaks=0" "$python")
  fi
  check "Python reads a snapshot through the installed typelib" "${python_command[@]}" -c '
import sys
import gi
gi.require_version("Hexz", "1")
from gi.repository import Hexz

snapshot = Hexz.Snapshot.open_path(sys.argv[1], None)
data = snapshot.read_bytes(Hexz.Stream.DISK, 0, 8, None).get_data()
assert data == b"installe", data

with open("/proc/self/maps") as maps:
    loaded = {line.split()[-1] for line in maps if "libhexz-glib-1.so" in line}
assert loaded == {sys.argv[2] + "/libhexz-glib-1.so.0.0.0"}, loaded
' "$work/program.hxz" "$root_libdir"
else
  skip "Python reads a snapshot through the installed typelib" "introspection is disabled in this build"
fi

[ "$failed" -eq 0 ]
