#!/bin/bash
# test-plugin.sh: TAP test of the nbdkit plugin hexz-plugin.so
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Serves a packed snapshot through nbdkit on a unix socket in a private
# temporary directory, writes to it with qemu-io, and checks the export, the
# overlay's .meta page list, the overlay lock, a commit of the overlay,
# the state left by SIGKILL while writes are in flight, and that no command
# replaces a served snapshot or commits a served overlay. Every nbdkit
# started here is stopped by its own pid.

set -u

plugin="${HEXZ_BUILD_ROOT:-}/tools/hexz-plugin.so"
python=/usr/bin/python3
disk_size=$((8 * 1024 * 1024 + 2560))   # the last 4 KiB page is partial
page_size=4096

test_number=0
failures=0

ok () {
  test_number=$((test_number + 1))
  echo "ok $test_number - $1"
}

not_ok () {
  test_number=$((test_number + 1))
  failures=$((failures + 1))
  echo "not ok $test_number - $1"
}

# check NAME COMMAND...: one TAP line for the command's exit status; the
# command's output goes to the TAP log as comments.
check () {
  local name=$1
  shift
  local output
  if output=$("$@" 2>&1); then
    ok "$name"
  else
    not_ok "$name"
  fi
  [ -n "$output" ] && printf '%s\n' "$output" | sed 's/^/# /'
  return 0
}

skip_all () {
  echo "1..0 # SKIP $1"
  exit 0
}

# nbdkit is not instrumented: in an AddressSanitizer build it loads the
# instrumented plugin with the runtime preloaded (HEXZ_ASAN_RUNTIME). Leak
# detection is off in nbdkit, because nbdkit 1.32 itself leaks a 280-byte
# block at its first connection, and without nbdkit's debug symbols no
# suppression could name it without also hiding the plugin's leaks.
nbdkit=(nbdkit)
if [ -n "${HEXZ_ASAN_RUNTIME:-}" ]; then
  nbdkit=(env "LD_PRELOAD=$HEXZ_ASAN_RUNTIME" "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" nbdkit)
fi

for program in nbdkit qemu-img qemu-io "$python"; do
  command -v "$program" >/dev/null || skip_all "$program is not installed"
done
[ -f "$plugin" ] || skip_all "plugin not built at $plugin"
[ -x "${HEXZ_SNAP:-}" ] || skip_all "HEXZ_SNAP does not name the hexz-snap tool"

tmp=$(mktemp -d -t hexz-plugin-XXXXXX) || exit 1
chmod 0700 "$tmp"
server_pid=

stop_server () {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    server_pid=
  fi
}

cleanup () {
  stop_server
  rm -rf "$tmp"
}
trap cleanup EXIT

socket="$tmp/nbd.sock"
export_uri="nbd+unix:///?socket=$socket"

# start_server PARAMETERS...: starts nbdkit in the foreground as a child,
# keeps its pid in server_pid and waits for its socket.
start_server () {
  rm -f "$socket"
  "${nbdkit[@]}" --unix "$socket" --foreground --exit-with-parent \
    "$plugin" "$@" 2>"$tmp/nbdkit.log" &
  server_pid=$!
  for _ in $(seq 100); do
    [ -S "$socket" ] && return 0
    if ! kill -0 "$server_pid" 2>/dev/null; then
      wait "$server_pid"
      server_pid=
      sed 's/^/# nbdkit: /' "$tmp/nbdkit.log"
      return 1
    fi
    sleep 0.1
  done
  echo "# nbdkit did not create $socket within 10 s"
  return 1
}

# qemu_io TARGET FORMAT COMMANDS...: runs each command through qemu-io.
qemu_io () {
  local target=$1 format=$2
  shift 2
  local arguments=()
  for command in "$@"; do
    arguments+=(-c "$command")
  done
  timeout 120 qemu-io -f "$format" "${arguments[@]}" "$target" >/dev/null
}

# The disk: random data, zero runs, a run of one repeated byte, and data in
# the partial last page.
"$python" - "$tmp/disk.raw" "$disk_size" <<'EOF' || exit 1
import random, sys
path, size = sys.argv[1], int(sys.argv[2])
generator = random.Random(7)
data = bytearray(size)
data[0:300000] = generator.randbytes(300000)
data[1048576:1048576 + 65536 * 3] = b'\x5a' * (65536 * 3)
data[2000000:2500000] = generator.randbytes(500000)
data[size - 6000:] = generator.randbytes(6000)
open(path, 'wb').write(data)
EOF

snapshot="$tmp/disk.hxz"
overlay="$tmp/vm.overlay"
meta="$tmp/vm.meta"

check "pack the disk image" "$HEXZ_SNAP" pack "$tmp/disk.raw" "$snapshot"
check "extract the packed disk" "$HEXZ_SNAP" extract "$snapshot" --disk "$tmp/extracted.raw"

# Read-only export: no overlay.
if start_server snapshot="$snapshot"; then
  ok "read-only server starts"
  check "read-only export equals extracted disk" \
    qemu-img compare -f raw -F raw "$tmp/extracted.raw" "$export_uri"
  check "read-only export equals original image" \
    qemu-img compare -f raw -F raw "$tmp/disk.raw" "$export_uri"
  if qemu_io "$export_uri" raw "write -P 1 0 512" 2>/dev/null; then
    not_ok "read-only export rejects writes"
  else
    ok "read-only export rejects writes"
  fi

  # A zero run spanning whole snapshot blocks must be reported as zeros, and
  # the random data as data.
  timeout 60 qemu-img map --output=json -f raw "$export_uri" >"$tmp/map.json"
  check "block status reports zeros and data" "$python" - "$tmp/map.json" <<'EOF'
import json, sys
extents = json.load(open(sys.argv[1]))
def covering(offset):
    return next(e for e in extents if e['start'] <= offset < e['start'] + e['length'])
zero = covering(4 * 1024 * 1024)
assert zero['zero'], f'offset 4 MiB is not reported as zeros: {zero}'
data = covering(100000)
assert not data['zero'], f'offset 100000 is reported as zeros: {data}'
assert data['data'], f'offset 100000 is not reported as data: {data}'
EOF
  stop_server
else
  not_ok "read-only server starts"
fi

# create=true cannot make an overlay in a folder that does not exist, and
# the error reports the failed creation rather than asking for create=true.
if timeout 60 "${nbdkit[@]}" --unix "$socket" --foreground "$plugin" snapshot="$snapshot" \
     overlay="$tmp/missing/vm.overlay" create=true >"$tmp/no-folder.log" 2>&1; then
  not_ok "overlay in a missing folder rejected"
else
  check "overlay in a missing folder rejected" \
    grep -q "Failed to create overlay .*: No such file or directory" "$tmp/no-folder.log"
fi

# A missing overlay is rejected unless create=true. Servers expected to
# fail at start run under timeout, so that one that starts by mistake (for
# instance after the first server crashed and released its overlay lock)
# fails the check instead of serving until the suite's timeout.
if timeout 60 "${nbdkit[@]}" --unix "$socket" --foreground "$plugin" snapshot="$snapshot" \
     overlay="$overlay" >"$tmp/missing.log" 2>&1; then
  not_ok "missing overlay rejected without create=true"
else
  check "missing overlay rejected without create=true" \
    grep -q "create=true" "$tmp/missing.log"
fi

cp "$tmp/disk.raw" "$tmp/expected.raw"

# Writes at unaligned offsets and lengths, within one page, across pages,
# into the partial last page, write-zeroes and discards (which the plugin
# turns into zeros).
write_commands=(
  "write -P 0x11 1000 5000"
  "write -P 0x22 4100 100"
  "write -P 0x33 8191 2"
  "write -P 0x44 65536 131072"
  "write -P 0x55 300001 12345"
  "write -z 70000 9000"
  "write -z 1048576 196608"
  "write -z 6000000 300000"
  "write -P 0x66 $((disk_size - 3000)) 3000"
  "write -P 0x77 $((disk_size - 5000)) 700"
  "write -P 0x12 2000100 1"
)
# Parallel requests on the sectors of one page: the plugin must serialize
# their read-modify-write cycles.
for sector in 0 1 2 3 4 5 6 7; do
  write_commands+=("aio_write -P $((0xa0 + sector)) $((20480 + sector * 512)) 512")
done
write_commands+=("aio_flush")
discard_commands=(
  "discard 2100000 20000"
  "discard 2400000 4096"
)
expected_discards=(
  "write -z 2100000 20000"
  "write -z 2400000 4096"
)

if start_server snapshot="$snapshot" overlay="$overlay" create=true; then
  ok "server creates the overlay"
  check "overlay file has the disk's size" \
    test "$(stat -c %s "$overlay")" -eq "$disk_size"
  check "overlay and page list are private" \
    test "$(stat -c %a "$overlay") $(stat -c %a "$meta")" = "600 600"

  check "unaligned writes, zeroes and discards succeed" \
    qemu_io "$export_uri" raw "${write_commands[@]}" "${discard_commands[@]}" "flush"
  qemu_io "$tmp/expected.raw" raw "${write_commands[@]}" "${expected_discards[@]}"
  check "export reads back the writes" \
    qemu-img compare -f raw -F raw "$tmp/expected.raw" "$export_uri"

  # The 0x5a run at 1 MiB was data in the snapshot and is zeroed in the
  # overlay now, and the 0x44 write at 64 KiB turned zeros into data.
  timeout 60 qemu-img map --output=json -f raw "$export_uri" >"$tmp/overlay-map.json"
  check "block status reports zeroed and written overlay pages" \
    "$python" - "$tmp/overlay-map.json" <<'EOF'
import json, sys
extents = json.load(open(sys.argv[1]))
def covering(offset):
    return next(e for e in extents if e['start'] <= offset < e['start'] + e['length'])
zeroed = covering(1048576 + 65536)
assert zeroed['zero'], f'zeroed overlay pages at 1 MiB are not reported as zeros: {zeroed}'
written = covering(100000)
assert written['data'], f'written bytes at offset 100000 are not reported as data: {written}'
assert not written['zero'], f'written bytes at offset 100000 are reported as zeros: {written}'
EOF

  if timeout 60 "${nbdkit[@]}" --unix "$tmp/second.sock" --foreground "$plugin" snapshot="$snapshot" \
       overlay="$overlay" >"$tmp/second.log" 2>&1; then
    not_ok "second server on the overlay is rejected"
  else
    check "second server on the overlay is rejected" \
      grep -q "is locked by another process" "$tmp/second.log"
  fi
  if timeout 30 qemu-io -f raw -c "write -P 1 0 512" "$overlay" >/dev/null 2>&1; then
    not_ok "QEMU cannot open the locked overlay"
  else
    ok "QEMU cannot open the locked overlay"
  fi
  stop_server
else
  not_ok "server creates the overlay"
fi

# The new overlay records the snapshot it lies on, in an extended
# attribute, and another snapshot of the same size is refused.
recorded=$("$python" -c 'import os, sys
print(os.getxattr(sys.argv[1], "user.hexz.base-id").decode())' "$overlay" 2>/dev/null)
if [ -n "$recorded" ]; then
  check "the overlay records its snapshot's id" \
    test "$recorded" = "$("$HEXZ_SNAP" info --json "$snapshot" |
                           "$python" -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
  "$HEXZ_SNAP" pack "$tmp/disk.raw" "$tmp/other.hxz" >/dev/null
  if timeout 60 "${nbdkit[@]}" --unix "$tmp/other.sock" --foreground "$plugin" snapshot="$tmp/other.hxz" \
       overlay="$overlay" >"$tmp/other.log" 2>&1; then
    not_ok "an overlay on another snapshot is refused"
  else
    check "an overlay on another snapshot is refused" \
      grep -q "was written on top of the snapshot with id $recorded" "$tmp/other.log"
  fi
else
  ok "the overlay records its snapshot's id # SKIP no user extended attributes here"
fi

# meta_check: every .meta entry is a page of the disk, listed once, and
# every page whose content differs from the snapshot is listed.
meta_check () {
  "$python" - "$meta" "$tmp/disk.raw" "$tmp/expected.raw" "$disk_size" <<'EOF'
import struct, sys
meta, original, expected, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
data = open(meta, 'rb').read()
assert len(data) % 8 == 0, f'.meta is {len(data)} bytes long'
pages = [p for (p,) in struct.iter_unpack('<Q', data)]
n_pages = (size + 4095) // 4096
assert all(p < n_pages for p in pages), 'a .meta entry lies past the disk'
assert len(pages) == len(set(pages)), f'{len(pages) - len(set(pages))} duplicate entries'
a, b = open(original, 'rb').read(), open(expected, 'rb').read()
changed = {p for p in range(n_pages) if a[p * 4096:(p + 1) * 4096] != b[p * 4096:(p + 1) * 4096]}
missing = changed - set(pages)
assert not missing, f'modified pages not listed: {sorted(missing)[:10]}'
print(f'{len(pages)} pages listed, {len(changed)} differ from the snapshot')
EOF
}

check ".meta lists each modified page once" meta_check

# A restarted server loads the page list; rewriting listed pages adds no
# entry, writing a new page adds one.
if start_server snapshot="$snapshot" overlay="$overlay"; then
  ok "server restarts on the existing overlay"
  check "restarted export reads back the writes" \
    qemu-img compare -f raw -F raw "$tmp/expected.raw" "$export_uri"
  entries_before=$(( $(stat -c %s "$meta") / 8 ))
  more_commands=("write -P 0x88 1500 3000" "write -P 0x99 3000000 10")
  check "writes after restart succeed" qemu_io "$export_uri" raw "${more_commands[@]}" "flush"
  qemu_io "$tmp/expected.raw" raw "${more_commands[@]}"
  entries_after=$(( $(stat -c %s "$meta") / 8 ))
  check "rewriting listed pages appends only the new page" \
    test "$entries_after" -eq $((entries_before + 1))
  check "export after restart reads back all writes" \
    qemu-img compare -f raw -F raw "$tmp/expected.raw" "$export_uri"
  stop_server
else
  not_ok "server restarts on the existing overlay"
fi

# Two connections write at once (the plugin advertises multi-conn), each
# with parallel requests, to interleaved ranges that share pages.
if start_server snapshot="$snapshot" overlay="$overlay"; then
  first_commands=()
  second_commands=()
  for index in $(seq 0 31); do
    first_commands+=("aio_write -P $((index + 1)) $((4000000 + index * 6000)) 3000")
    second_commands+=("aio_write -P $((index + 101)) $((4003000 + index * 6000)) 3000")
  done
  qemu_io "$export_uri" raw "${first_commands[@]}" "aio_flush" &
  first_writer=$!
  qemu_io "$export_uri" raw "${second_commands[@]}" "aio_flush" &
  second_writer=$!
  writers_ok=yes
  wait "$first_writer" || writers_ok=no
  wait "$second_writer" || writers_ok=no
  check "two connections write in parallel" test "$writers_ok" = yes
  qemu_io "$tmp/expected.raw" raw "${first_commands[@]}" "${second_commands[@]}" "aio_flush"
  check "both connections' writes read back" \
    qemu-img compare -f raw -F raw "$tmp/expected.raw" "$export_uri"
  stop_server
else
  not_ok "two connections write in parallel"
fi

# Flush order: on every thread, each fdatasync of the page list follows a
# sync of the overlay, so no durable entry names data that is not durable.
# qemu-io runs in writeback mode here, so that only "flush" and the FUA
# write ("write -f") ask for durability: the FUA write must sync the
# overlay and then the page list before the next write is sent.
if ! command -v strace >/dev/null; then
  test_number=$((test_number + 1))
  echo "ok $test_number - flush syncs the overlay before the page list # SKIP needs strace"
else
  rm -f "$socket" "$tmp/traced.pid"
  strace -f -qq -o "$tmp/strace.log" -e trace=openat,fsync,fdatasync,pwrite64 \
    "${nbdkit[@]}" --unix "$socket" --foreground --exit-with-parent --pidfile "$tmp/traced.pid" \
    "$plugin" snapshot="$snapshot" overlay="$overlay" 2>"$tmp/nbdkit.log" &
  strace_pid=$!
  for _ in $(seq 100); do
    [ -S "$socket" ] && [ -s "$tmp/traced.pid" ] && break
    sleep 0.1
  done
  flush_commands=("write -P 0xe1 5000000 100" "flush" "write -P 0xe2 5100000 5000" "flush"
                  "write -f -P 0xe3 5200000 100" "write -P 0xe4 5300000 100")
  flush_arguments=()
  for command in "${flush_commands[@]}"; do
    flush_arguments+=(-c "$command")
  done
  timeout 120 qemu-io -f raw -t writeback "${flush_arguments[@]}" "$export_uri" >/dev/null
  qemu_io "$tmp/expected.raw" raw "${flush_commands[@]}"
  [ -s "$tmp/traced.pid" ] && kill "$(cat "$tmp/traced.pid")"
  wait "$strace_pid"
  check "flush syncs the overlay before the page list" \
    "$python" - "$tmp/strace.log" "$overlay" "$meta" <<'EOF'
import re, sys
log, overlay, meta = sys.argv[1:4]
fua_page_offset = 5200000 // 4096 * 4096
next_page_offset = 5300000 // 4096 * 4096
fds, syncs, events = {}, {}, []
for line in open(log):
    opened = re.match(r'(\d+) +openat\([^,]+, "([^"]+)".* = (\d+)$', line)
    if opened and opened.group(2) in (overlay, meta):
        fds[int(opened.group(3))] = 'overlay' if opened.group(2) == overlay else 'meta'
    # A call that another thread interrupts in the log ends in
    # '<unfinished ...>'; its start is what orders it on its thread.
    synced = re.match(r'(\d+) +f(?:data)?sync\((\d+)[) ]', line)
    if synced and int(synced.group(2)) in fds:
        syncs.setdefault(synced.group(1), []).append(fds[int(synced.group(2))])
        events.append(fds[int(synced.group(2))])
    written = re.match(r'(\d+) +pwrite64\((\d+), .*, (\d+), (\d+)(?:\)| <unfinished)', line)
    if written and fds.get(int(written.group(2))) == 'overlay':
        events.append(int(written.group(4)))
assert len(fds) == 2, f'overlay and page list not both opened: {fds}'
assert fua_page_offset in events, 'the FUA write is missing from the log'
assert next_page_offset in events, 'the write after the FUA write is missing from the log'
between = events[events.index(fua_page_offset) + 1:events.index(next_page_offset)]
assert between == ['overlay', 'meta'], f'syncs between the FUA write and the next: {between}'
meta_syncs = sum(s.count('meta') for s in syncs.values())
assert meta_syncs >= 3, f'{meta_syncs} syncs of the page list for two flushes and a FUA write'
for thread, order in syncs.items():
    for index, name in enumerate(order):
        if name == 'meta':
            assert index > 0 and order[index - 1] == 'overlay', f'thread {thread}: {order}'
print(f'{meta_syncs} syncs of the page list, each after a sync of the overlay')
EOF
fi

check ".meta still lists each modified page once" meta_check

check "commit the overlay" \
  "$HEXZ_SNAP" commit --base "$snapshot" --overlay "$overlay" --output "$tmp/committed.hxz"
check "extract the committed disk" \
  "$HEXZ_SNAP" extract "$tmp/committed.hxz" --disk "$tmp/committed.raw"
check "committed disk equals the expected image" cmp "$tmp/expected.raw" "$tmp/committed.raw"

# The committed snapshot serves the expected disk, and so does a thin one,
# which the plugin reads through its parent.
check "thin commit of the overlay" \
  "$HEXZ_SNAP" commit --thin --base "$snapshot" --overlay "$overlay" --output "$tmp/thin.hxz"
for committed in committed thin; do
  if start_server snapshot="$tmp/$committed.hxz"; then
    check "$committed snapshot serves the expected disk" \
      qemu-img compare -f raw -F raw "$tmp/expected.raw" "$export_uri"
    stop_server
  else
    not_ok "$committed snapshot serves the expected disk"
  fi
done

# Invalid page lists are rejected at start.
cp "$meta" "$tmp/meta.saved"
# reject_meta NAME MESSAGE: the server must fail to start and log MESSAGE.
reject_meta () {
  if timeout 60 "${nbdkit[@]}" --unix "$tmp/bad.sock" --foreground "$plugin" snapshot="$snapshot" \
       overlay="$overlay" >"$tmp/bad.log" 2>&1; then
    not_ok "$1"
  else
    check "$1" grep -q "$2" "$tmp/bad.log"
  fi
}
printf 'abc' >>"$meta"
reject_meta "page list of partial entries rejected" "not a multiple of 8"
cp "$tmp/meta.saved" "$meta"
"$python" -c 'import struct, sys; open(sys.argv[1], "ab").write(struct.pack("<Q", 1 << 40))' "$meta"
reject_meta "page list entry past the disk rejected" "but the disk has"
cp "$tmp/meta.saved" "$meta"

# create=true must not pair a new, empty overlay with an old page list that
# lists pages, and must leave no overlay behind when it fails.
"$python" -c 'import struct, sys; open(sys.argv[1], "wb").write(struct.pack("<Q", 3))' \
  "$tmp/orphan.meta"
if timeout 60 "${nbdkit[@]}" --unix "$tmp/orphan.sock" --foreground "$plugin" snapshot="$snapshot" \
     overlay="$tmp/orphan.ovl" create=true >"$tmp/orphan.log" 2>&1; then
  not_ok "orphan page list rejected"
else
  check "orphan page list rejected" grep -q "lists modified pages" "$tmp/orphan.log"
fi
check "failed start leaves no overlay" test ! -e "$tmp/orphan.ovl"

# A real QEMU boots the test guest from the export. The guest writes a
# 48-byte record to the 512-byte sector at 1 MiB, whose 4 KiB page holds
# 0x5a bytes in the snapshot: the page must be listed, hold the record and
# keep the rest of its bytes. nbdkit then gets SIGKILL while the guest
# keeps writing a record every 50 ms, and the overlay must still commit.
guest_overlay="$tmp/guest.ovl"
qemu_system=$(command -v qemu-system-x86_64)
if [ -z "${HEXZ_TEST_GUEST:-}" ] || [ -z "$qemu_system" ]; then
  for name in "guest boots from the export" "guest record reaches the overlay" \
              "guest write keeps the rest of its page" \
              "listed pages hold guest records after SIGKILL" \
              "commit succeeds after SIGKILL while the guest writes"; do
    test_number=$((test_number + 1))
    echo "ok $test_number - $name # SKIP needs the test guest and qemu-system-x86_64"
  done
elif start_server snapshot="$snapshot" overlay="$guest_overlay" create=true; then
  "$qemu_system" -nodefaults -machine pc -accel tcg -m 64 -display none \
    -kernel "$HEXZ_TEST_GUEST" -append "fill=1M interval=50" \
    -drive "file=$export_uri,format=raw,if=ide,cache=writethrough" \
    -debugcon "file:$tmp/guest.log" 2>"$tmp/qemu.log" &
  qemu_pid=$!
  # Wait for the third record: its sequence number is at byte 8.
  record_found=no
  for _ in $(seq 300); do
    if "$python" - "$tmp/guest.meta" "$guest_overlay" 2>/dev/null <<'EOF'
import struct, sys
pages = [p for (p,) in struct.iter_unpack('<Q', open(sys.argv[1], 'rb').read())]
assert 256 in pages
record = open(sys.argv[2], 'rb').read()[1048576:1048576 + 48]
magic, = struct.unpack_from('<I', record, 0)
sequence, = struct.unpack_from('<I', record, 8)
assert magic == 0x525a5848
assert sequence >= 3
EOF
    then
      record_found=yes
      break
    fi
    kill -0 "$qemu_pid" 2>/dev/null || break
    sleep 0.1
  done
  # The guest is still writing: let it write a few more records, kill
  # nbdkit under it, then QEMU, which now fails its writes.
  sleep 0.5
  kill -KILL "$server_pid"
  wait "$server_pid" 2>/dev/null
  server_pid=
  kill "$qemu_pid" 2>/dev/null
  wait "$qemu_pid" 2>/dev/null
  sed 's/^/# qemu: /' "$tmp/qemu.log"
  check "guest boots from the export" grep -q . "$tmp/guest.log"
  check "guest record reaches the overlay" test "$record_found" = yes
  check "guest write keeps the rest of its page" "$python" - "$guest_overlay" <<'EOF'
import sys
page = open(sys.argv[1], 'rb').read()[1048576:1048576 + 4096]
assert page[512:] == b'\x5a' * (4096 - 512), 'bytes after the record sector changed'
EOF
  # The guest writes only its record sector, so page 256 is the one page
  # that may be listed, and it must hold a whole record.
  check "listed pages hold guest records after SIGKILL" \
    "$python" - "$tmp/guest.meta" "$guest_overlay" <<'EOF'
import struct, sys
data = open(sys.argv[1], 'rb').read()
assert len(data) % 8 == 0, f'.meta is {len(data)} bytes long'
pages = [p for (p,) in struct.iter_unpack('<Q', data)]
assert pages == [256], f'listed pages: {pages}'
record = open(sys.argv[2], 'rb').read()[1048576:1048576 + 48]
magic, = struct.unpack_from('<I', record, 0)
sequence, = struct.unpack_from('<I', record, 8)
assert magic == 0x525a5848, f'record magic {magic:#x}'
assert sequence >= 3, f'record sequence {sequence}'
print(f'record {sequence} in the overlay')
EOF
  check "commit succeeds after SIGKILL while the guest writes" \
    "$HEXZ_SNAP" commit --base "$snapshot" --overlay "$guest_overlay" --output "$tmp/guest.hxz"
else
  not_ok "guest boots from the export"
fi

# Crash safety: SIGKILL nbdkit while asynchronous writes are in flight.
# Writes are disjoint and at least one page apart, so each page's expected
# content is known whichever writes completed: every listed page must hold
# the snapshot's bytes with its one write applied.
crash_overlay="$tmp/crash.ovl"
crash_meta="$tmp/crash.meta"
"$python" - "$disk_size" >"$tmp/crash-writes.txt" <<'EOF'
import random, sys
size = int(sys.argv[1])
generator = random.Random(11)
offset = 512
while True:
    length = generator.randrange(1, 12000)
    if offset + length > size:
        break
    print(offset, length, generator.randrange(1, 256))
    offset += length + 4096 + generator.randrange(0, 3000)
EOF
crash_commands=()
while read -r offset length pattern; do
  crash_commands+=("aio_write -P $pattern $offset $length")
done <"$tmp/crash-writes.txt"

if start_server snapshot="$snapshot" overlay="$crash_overlay" create=true; then
  ok "crash server starts"
  # Repeat the writes so that the kill lands while some are in flight.
  crash_arguments=()
  for _ in 1 2 3; do
    for command in "${crash_commands[@]}"; do
      crash_arguments+=(-c "$command")
    done
  done
  timeout 120 qemu-io -f raw "${crash_arguments[@]}" "$export_uri" >/dev/null 2>&1 &
  writer_pid=$!
  for _ in $(seq 200); do
    [ "$(stat -c %s "$crash_meta" 2>/dev/null || echo 0)" -ge 80 ] && break
    sleep 0.01
  done
  kill -KILL "$server_pid"
  wait "$server_pid" 2>/dev/null
  server_pid=
  wait "$writer_pid" 2>/dev/null
  check "listed pages hold completed writes after SIGKILL" \
    "$python" - "$crash_meta" "$crash_overlay" "$tmp/disk.raw" "$tmp/crash-writes.txt" "$disk_size" <<'EOF'
import struct, sys
meta, overlay, original, writes, size = sys.argv[1:6]
size = int(size)
data = open(meta, 'rb').read()
assert len(data) % 8 == 0, f'.meta is {len(data)} bytes long'
pages = [p for (p,) in struct.iter_unpack('<Q', data)]
assert len(pages) == len(set(pages)), 'duplicate .meta entries'
expected = bytearray(open(original, 'rb').read())
for line in open(writes):
    offset, length, pattern = map(int, line.split())
    expected[offset:offset + length] = bytes([pattern]) * length
overlay_data = open(overlay, 'rb').read()
for page in pages:
    start, end = page * 4096, min(page * 4096 + 4096, size)
    assert overlay_data[start:end] == expected[start:end], f'listed page {page} holds unwritten data'
n_pages = (size + 4095) // 4096
print(f'{len(pages)} of {n_pages} pages listed when nbdkit was killed')
EOF
  check "commit succeeds after SIGKILL" \
    "$HEXZ_SNAP" commit --base "$snapshot" --overlay "$crash_overlay" --output "$tmp/crash.hxz"
  if start_server snapshot="$snapshot" overlay="$crash_overlay"; then
    ok "server restarts after SIGKILL"
    stop_server
  else
    not_ok "server restarts after SIGKILL"
  fi
else
  not_ok "crash server starts"
fi

# While nbdkit serves a thin snapshot over the base, pack and commit must
# not replace either file nor commit the served overlay. This runs last
# because it replaces the snapshot once the server is gone.
lock_overlay="$tmp/lock.overlay"
lock_thin="$tmp/lock-thin.hxz"
lock_child_overlay="$tmp/lock-child.overlay"
lock_ready=false
if start_server snapshot="$snapshot" overlay="$lock_overlay" create=true &&
   qemu_io "$export_uri" raw "write -P 0x71 0 8192" &&
   stop_server &&
   "$HEXZ_SNAP" commit --thin --base "$snapshot" --overlay "$lock_overlay" \
     --output "$lock_thin" >/dev/null &&
   start_server snapshot="$lock_thin" overlay="$lock_child_overlay" create=true &&
   qemu_io "$export_uri" raw "write -P 0x72 65536 4096"; then
  lock_ready=true
  ok "serve a thin snapshot over the base"
else
  stop_server
  not_ok "serve a thin snapshot over the base"
fi

# refused NAME EXPECTED COMMAND...: prints one TAP line. The command must
# exit 1, print EXPECTED, leave the served files unchanged and leave no
# temporary file behind.
refused () {
  local name=$1 expected=$2
  shift 2
  local before after output status
  before=$(sha256sum "$snapshot" "$lock_thin" "$lock_child_overlay" "${lock_child_overlay%.*}.meta")
  output=$("$@" 2>&1)
  status=$?
  after=$(sha256sum "$snapshot" "$lock_thin" "$lock_child_overlay" "${lock_child_overlay%.*}.meta")
  if [ "$status" -eq 1 ] && [[ "$output" == *"$expected"* ]] && [ "$before" = "$after" ] &&
     [ -z "$(find "$tmp" -name '.*.tmp')" ]; then
    ok "$name"
  else
    not_ok "$name"
    echo "# exit status $status"
  fi
  [ -n "$output" ] && printf '%s\n' "$output" | sed 's/^/# /'
  return 0
}

busy_message="is in use by a running machine"
if $lock_ready; then
  refused "pack refuses the served base" "$busy_message" \
    "$HEXZ_SNAP" pack "$tmp/disk.raw" "$snapshot"
  refused "commit refuses the served base" "$busy_message" \
    "$HEXZ_SNAP" commit --base "$snapshot" --overlay "$lock_overlay" --output "$snapshot"
  refused "commit refuses the served thin snapshot" "$busy_message" \
    "$HEXZ_SNAP" commit --base "$snapshot" --overlay "$lock_overlay" --output "$lock_thin"
  refused "commit refuses the overlay being written" "shut it down" \
    "$HEXZ_SNAP" commit --base "$lock_thin" --overlay "$lock_child_overlay" \
    --output "$tmp/lock-child.hxz"
  check "no snapshot was written from the overlay being written" \
    test ! -e "$tmp/lock-child.hxz"
  refused "extract --force refuses the overlay being written" "$busy_message" \
    "$HEXZ_SNAP" extract --force --disk "$lock_child_overlay" "$lock_thin"
  refused "pack --force refuses the page list being written" "$busy_message" \
    "$HEXZ_SNAP" pack --force "$tmp/disk.raw" "${lock_child_overlay%.*}.meta"
  stop_server
  check "commit of the overlay succeeds once the server stopped" \
    "$HEXZ_SNAP" commit --base "$lock_thin" --overlay "$lock_child_overlay" \
    --output "$tmp/lock-child.hxz"
  check "commit onto the thin snapshot succeeds once the server stopped" \
    "$HEXZ_SNAP" commit --base "$snapshot" --overlay "$lock_overlay" --output "$lock_thin"
  refused "commit onto its own base is still refused once the server stopped" \
    "reads it as its base" \
    "$HEXZ_SNAP" commit --base "$snapshot" --overlay "$lock_overlay" --output "$snapshot"
  check "pack onto the base succeeds once the server stopped" \
    "$HEXZ_SNAP" pack "$tmp/disk.raw" "$snapshot"
else
  for name in "pack refuses the served base" "commit refuses the served base" \
              "commit refuses the served thin snapshot" \
              "commit refuses the overlay being written" \
              "no snapshot was written from the overlay being written" \
              "extract --force refuses the overlay being written" \
              "pack --force refuses the page list being written" \
              "commit of the overlay succeeds once the server stopped" \
              "commit onto the thin snapshot succeeds once the server stopped" \
              "commit onto its own base is still refused once the server stopped" \
              "pack onto the base succeeds once the server stopped"; do
    not_ok "$name"
  done
fi

echo "1..$test_number"
exit 0
