#!/bin/bash
# Check the translations: the German catalog built in the build tree is
# complete and in step with the sources, hexz-snap and the library speak
# German with LANGUAGE=de, every source with messages is in po/POTFILES.in,
# every format string has a translator comment, and no user-visible message
# escaped _().
#
# The tool binds its text domain to the installed LOCALEDIR, so the German
# runs preload tests/hexz-test-localedir.c, which redirects that one
# binding to the build tree's po/ folder. No locale needs to be generated:
# glibc honours LANGUAGE with the C.UTF-8 locale.

set -u

build=${HEXZ_BUILD_ROOT:?HEXZ_BUILD_ROOT must point at the build tree}
source_root=$(cd "${G_TEST_SRCDIR:?G_TEST_SRCDIR must point at tests/}/.." && pwd)
snap=${HEXZ_SNAP:?HEXZ_SNAP must point at the built hexz-snap}
python=/usr/bin/python3
domain=hexz-glib-1

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

# Report one check from the exit status of the command after the
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

work=$(mktemp -d "${TMPDIR:-/tmp}/hexz-test-i18n.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "1..12"

# Sources listed for translation, relative to the source root.
mapfile -t potfiles < <(grep -v -e '^#' -e '^[[:space:]]*$' "$source_root/po/POTFILES.in")

check "every file in POTFILES.in exists" bash -c '
  cd "$1" && shift
  status=0
  for file in "$@"; do
    [ -f "$file" ] || { echo "missing: $file"; status=1; }
  done
  exit $status' _ "$source_root" "${potfiles[@]}"

check "every source with translatable messages is in POTFILES.in" bash -c '
  cd "$1" && shift
  status=0
  for file in $(grep -l -E "\b(N?C?_|g_dngettext)\(\"" hexz-glib/*.c tools/*.c 2>/dev/null); do
    printf "%s\n" "$@" | grep -qxF "$file" || { echo "not listed: $file"; status=1; }
  done
  exit $status' _ "$source_root" "${potfiles[@]}"

check "no user-visible message escaped _()" bash -c '
  cd "$1" && "$2" tests/hexz-check-messages.py hexz-glib/*.c tools/*.c' _ "$source_root" "$python"

# A fresh template with only the "Translators:" comments, to check them and
# the German catalog against the current sources.
(
  cd "$source_root" &&
  xgettext --from-code=UTF-8 --add-comments=Translators: --language=C \
    --keyword=_ --keyword=N_ --keyword=C_:1c,2 --keyword=NC_:1c,2 \
    --keyword=g_dngettext:2,3 --flag=g_set_error:4:c-format \
    --flag=g_error_new:3:c-format --flag=g_strdup_printf:1:c-format \
    --package-name=hexz-glib --output="$work/fresh.pot" "${potfiles[@]}"
) > "$work/xgettext.log" 2>&1

check "xgettext extracts the messages" bash -c '
  cat "$1"; [ -s "$2" ] && grep -q "^msgid \"[^\"]" "$2"' _ "$work/xgettext.log" "$work/fresh.pot"

check "every format string has a translator comment" "$python" - "$work/fresh.pot" <<'EOF'
import re, sys

entries = open(sys.argv[1], encoding="utf-8").read().split("\n\n")
missing = []
for entry in entries[1:]:
    if "#, c-format" not in entry:
        continue
    if "#. Translators:" not in entry:
        location = re.search(r"^#: (\S+)", entry, re.M)
        msgid = re.search(r'^msgid ((?:".*"\n)+)', entry, re.M)
        text = "".join(re.findall(r'"(.*)"', msgid.group(1))) if msgid else entry
        missing.append(f"{location.group(1) if location else '?'}: {text}")
for line in missing:
    print("no translator comment:", line)
sys.exit(1 if missing else 0)
EOF

check "de.po has valid format strings" \
  msgfmt --check --output-file=/dev/null "$source_root/po/de.po"

check "de.po translates every message of the current sources" bash -c '
  msgmerge --quiet --no-fuzzy-matching --output-file="$3/merged.po" "$1" "$2" || exit 1
  statistics=$(LC_ALL=C msgfmt --statistics --output-file=/dev/null "$3/merged.po" 2>&1)
  echo "$statistics"
  case "$statistics" in
    *untranslated*|*fuzzy*) exit 1 ;;
  esac' _ "$source_root/po/de.po" "$work/fresh.pot" "$work"

catalog=$build/po/de/LC_MESSAGES/$domain.mo
check "German catalog is built" test -f "$catalog"

# The preload module, built here so that the test needs nothing installed.
cc -shared -fPIC -o "$work/localedir.so" "$source_root/tests/hexz-test-localedir.c" -ldl \
  > "$work/cc.log" 2>&1 || cat "$work/cc.log" | sed 's/^/# /'

# Runs a command in German with the build tree's catalogs. In a build with
# AddressSanitizer its runtime must come first among the preloads.
in_german () {
  LD_PRELOAD="${HEXZ_ASAN_RUNTIME:+$HEXZ_ASAN_RUNTIME }$work/localedir.so" \
    HEXZ_TEST_TEXTDOMAIN=$domain HEXZ_TEST_LOCALEDIR=$build/po \
    LANGUAGE=de LC_ALL=C.UTF-8 "$@"
}

# The German translation of "Usage:" as the catalog stores it, looked up
# with gettext(1) rather than through the tool.
german_usage=$(TEXTDOMAINDIR=$build/po LANGUAGE=de LC_ALL=C.UTF-8 gettext -d "$domain" "Usage:")

in_german "$snap" --help > "$work/help.out" 2>&1
check "the catalog translates Usage: as Aufruf:" test "$german_usage" = "Aufruf:"
check "hexz-snap --help is in German" bash -c '
  head -n 3 "$1"
  grep -qxF "$2" "$1" && ! grep -q "Usage:" "$1"' _ "$work/help.out" "$german_usage"

in_german "$snap" no-such-command > "$work/unknown.out" 2>&1
check "an unknown command is reported in German" \
  grep -F "Unbekannter Befehl „no-such-command“" "$work/unknown.out"

# A library error: the file exists but is no snapshot.
printf 'This is a text file, not a snapshot.\n' > "$work/text.hxz"
in_german "$snap" info "$work/text.hxz" > "$work/library.out" 2>&1
check "a library error is reported in German" \
  grep -F "ist keine hexz-Schnappschussdatei" "$work/library.out"

[ "$failed" -eq 0 ]
