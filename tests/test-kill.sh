#!/bin/bash
# test-kill.sh: crash consistency of hexz-snap, as a TAP script
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Kills `hexz-snap pack` and `hexz-snap commit` with SIGKILL at several
# points of their output; `hexz-snap snap` and the nbdkit plugin follow,
# each with its own points and checks (see their sections below). The
# points are the first data the writer flushes, about 10 %, 50 % and 99 %
# of the final size, and the moment the file has its full size
# (finalizing: header, fsync, rename). The writer flushes in 4 MiB pieces,
# so a point lands within the flush that crosses it or on a later one.
# Each test line names the size reached. After every kill:
#
# - the output path contains the previous snapshot byte for byte (or nothing
#   when there was none); a kill while finalizing may also leave the new,
#   complete snapshot;
# - the only other file is one recognisable temporary file
#   (.NAME.XXXXXX.tmp), and the next run removes it, also one that writes
#   another output into the folder;
# - the inputs (image, base snapshot, overlay and .meta) are unchanged.
#
# The next run starts after the leftover temporary file was made to look
# a minute old: a writer removes only temporary files unchanged for a few
# seconds.

set -u

HEXZ_SNAP=${HEXZ_SNAP:?HEXZ_SNAP must name the built hexz-snap}

dir=$(mktemp -d "${TMPDIR:-/tmp}/hexz-test-kill-XXXXXX")
pids=()

cleanup () {
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$dir"
}
trap cleanup EXIT

count=0

ok () {
  count=$((count + 1))
  echo "ok $count - $1"
}

not_ok () {
  count=$((count + 1))
  echo "not ok $count - $1"
}

# check DESCRIPTION COMMAND...: passes when COMMAND succeeds. What COMMAND
# prints goes to standard error, because any other line on standard output
# breaks the TAP stream.
check () {
  local description=$1
  shift
  if "$@" >&2; then ok "$description"; else not_ok "$description"; fi
}

# Image size: a multiple of the 4 MiB write buffer large enough to give
# each kill point its own flush.
image_mib=64

# temp_files NAME [FOLDER]: the temporary files of output NAME in FOLDER
# (default $dir).
temp_files () {
  local name=$1 folder=${2:-$dir}
  local file
  for file in "$folder"/."$name".??????.tmp; do
    [ -e "$file" ] && echo "$file"
  done
}

# True while process PID runs; false once it exited (a zombie counts as
# exited, since the script reaps its children only in wait).
is_running () {
  local pid=$1 _comm state
  [ -r "/proc/$pid/stat" ] || return 1
  read -r _ _comm state _ < "/proc/$pid/stat" || return 1
  [ "$state" != "Z" ]
}

# kill_at FOLDER NAME WHEN LOG COMMAND...: runs COMMAND with its output in
# LOG and kills it with SIGKILL at WHEN. WHEN is either a number of bytes
# that its temporary file for output NAME in FOLDER reaches (temporary
# files left by earlier runs do not count), or "phase:PHASE", the start of
# a capture phase, which LOG shows in debug output. Sets killed_size to the
# size of the temporary file after the kill ("no" without one), or to
# "finished" when the command ended first (then command_status is its exit
# status).
#
# The poll runs in Python, without a fork per look, so that it keeps up
# with the writer's flushes on a loaded machine. Python starts COMMAND and
# has the kernel kill it if the poll itself dies.
kill_at () {
  local pid
  /usr/bin/python3 - "$@" > "$dir/kill-at.out" <<'PY' &
import ctypes, os, re, signal, subprocess, sys, time
folder, name, when, log = sys.argv[1:5]
command = sys.argv[5:]
pattern = re.compile(r'\.' + re.escape(name) + r'\.[A-Za-z0-9]{6}\.tmp$')
def temp_files():
    return [os.path.join(folder, n) for n in os.listdir(folder) if pattern.match(n)]
earlier = set(temp_files())
libc = ctypes.CDLL(None, use_errno=True)
def die_with_parent():
    libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
with open(log, 'wb') as output:
    child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                             preexec_fn=die_with_parent)
phase = re.compile(rb'Capture: phase ' + re.escape(when[6:].encode()) + rb'\b') if when.startswith('phase:') else None
seen = b''
def newest():
    files = [f for f in temp_files() if f not in earlier]
    return files[-1] if files else None
def size_of(path):
    try:
        return os.stat(path).st_size
    except (OSError, TypeError):
        return None
with open(log, 'rb') as reader:
    while child.poll() is None:
        if phase:
            seen = seen[-200:] + reader.read()
            hit = phase.search(seen) is not None
        else:
            size = size_of(newest())
            hit = size is not None and size >= int(when)
        if hit:
            child.kill()
            child.wait()
            size = size_of(newest())
            print('no' if size is None else size, 0)
            sys.exit(0)
        time.sleep(0.0005)
print('finished', child.returncode)
PY
  pid=$!
  pids+=("$pid")
  wait "$pid"
  read -r killed_size command_status < "$dir/kill-at.out"
}

# age_temp_files NAME [FOLDER]: makes the temporary files of output NAME
# look a minute old, as after a crash some time ago.
age_temp_files () {
  local file
  for file in $(temp_files "$1" "${2:-$dir}"); do
    touch -d '-1 minute' "$file"
  done
}

# files_except FOLDER LIST...: prints the names in FOLDER that are not in
# LIST.
files_except () {
  local folder=$1
  shift
  local name keep found
  for name in $(ls -A "$folder"); do
    found=0
    for keep in "$@"; do
      [ "$name" = "$keep" ] && found=1
    done
    [ $found -eq 0 ] && echo "$name"
  done
}

sha_of () {
  sha256sum "$@" | awk '{ print $1 }'
}

# The state after a kill: OUTPUT contains SAVED's bytes (or does not exist
# when SAVED is "none"); when FINALIZING is 1, a complete new snapshot
# whose disk equals EXPECTED_DISK (when not empty) is accepted too.
check_output_state () {
  local label=$1 output=$2 saved=$3 finalizing=$4 expected_disk=$5

  if [ "$saved" = none ]; then
    if [ ! -e "$output" ]; then
      ok "$label: no file at the output path"
    elif [ "$finalizing" = 1 ] && "$HEXZ_SNAP" verify "$output" > /dev/null 2>&1; then
      ok "$label: the new snapshot is complete"
    else
      not_ok "$label: a partial file at the output path"
    fi
  elif cmp -s "$output" "$saved"; then
    ok "$label: the previous snapshot is intact"
  elif [ "$finalizing" = 1 ] && "$HEXZ_SNAP" verify "$output" > /dev/null 2>&1 &&
       { [ -z "$expected_disk" ] ||
         { "$HEXZ_SNAP" extract "$output" --disk "$dir/extracted" > /dev/null 2>&1 &&
           cmp -s "$dir/extracted" "$expected_disk"; }; }; then
    ok "$label: the new snapshot is complete"
  else
    not_ok "$label: the output path contains neither the previous nor a complete snapshot"
    ls -la "$(dirname "$output")" | sed 's/^/# /'
    "$HEXZ_SNAP" verify "$output" 2>&1 | sed 's/^/# /'
  fi
  rm -f "$dir/extracted"
}

# check_after_kill LABEL FOLDER NAME SAVED FINALIZING EXPECTED_DISK LEFTOVER
# FINAL_SIZE KEEP...: the checks after kill_at. The run was killed; only
# one that was FINALIZING may have finished first. The output path contains
# SAVED or, when FINALIZING, a complete new snapshot (see
# check_output_state). One temporary file is left unless the new snapshot
# replaced SAVED, the LEFTOVER temporary file of an earlier run (if any) is
# gone, and FOLDER contains no file besides NAME, SAVED, the temporary file
# and the KEEP names.
check_after_kill () {
  local label=$1 folder=$2 name=$3 saved=$4 finalizing=$5 expected_disk=$6 leftover=$7 final_size=$8
  shift 8
  local output="$folder/$name" temps extra

  if [ "$killed_size" = finished ]; then
    # Only a kill while finalizing can come too late.
    check "$label: the run finished before the kill" test "$finalizing" = 1 -a "$command_status" = 0
  else
    ok "$label: killed with $killed_size bytes of about $final_size in the temporary file"
  fi

  check_output_state "$label" "$output" "$saved" "$finalizing" "$expected_disk"

  temps=$(temp_files "$name" "$folder")
  if [ "$killed_size" = finished ] || ! cmp -s "$output" "$saved"; then
    check "$label: no temporary file is left after the rename" test -z "$temps"
  else
    check "$label: one temporary file is left" test "$(echo "$temps" | grep -c .)" -eq 1
  fi
  if [ -n "$leftover" ]; then
    check "$label: the earlier run's temporary file was removed" test ! -e "$leftover"
  fi
  extra=$(files_except "$folder" "$name" "$(basename "$saved")" \
                       $(for t in $temps; do basename "$t"; done) "$@")
  check "$label: no other file appeared${extra:+ (found $extra)}" test -z "$extra"
}

# kill_series LABEL OUTPUT_NAME EXPECTED_DISK INPUTS -- COMMAND...: runs
# COMMAND once to learn the output size, then kills it at each point and
# checks the state after each kill; INPUTS are files that must not change.
kill_series () {
  local label=$1 name=$2 expected_disk=$3
  shift 3
  local inputs=()
  while [ "$1" != "--" ]; do
    inputs+=("$1")
    shift
  done
  shift

  local output="$dir/$name"
  local inputs_sha final_size target saved finalizing point at
  inputs_sha=$(sha_of "${inputs[@]}")

  # A first run killed early, with no previous output.
  kill_at "$dir" "$name" 1 "$dir/command.log" "$@"
  check "$label: killed at ${killed_size} bytes, first run" test "$killed_size" != finished
  check_output_state "$label, first run" "$output" none 0 "$expected_disk"

  # A complete run gives the previous output for the kills below, and
  # removes the first run's temporary file.
  age_temp_files "$name"
  "$@" > "$dir/command.log" 2>&1
  check "$label: a complete run succeeds" test $? -eq 0
  check "$label: the complete run removed the temporary file" test -z "$(temp_files "$name")"
  check "$label: the complete snapshot verifies" "$HEXZ_SNAP" verify "$output"
  final_size=$(stat -c %s "$output")
  cp "$output" "$dir/saved.hxz"
  saved="$dir/saved.hxz"

  for point in 1 10 50 99 finalize; do
    local leftover
    leftover=$(temp_files "$name")
    age_temp_files "$name"

    # The last flush can complete the file, so from 99 % on the kill may
    # land while finalizing, even after the rename.
    finalizing=0
    if [ "$point" = finalize ]; then
      target=$final_size
      finalizing=1
    else
      target=$(( final_size * point / 100 ))
      [ "$point" -ge 99 ] && finalizing=1
    fi

    at="at $point %"
    [ "$point" = finalize ] && at="while finalizing"
    kill_at "$dir" "$name" "$target" "$dir/command.log" "$@"
    check_after_kill "$label $at" "$dir" "$name" "$saved" "$finalizing" "$expected_disk" \
      "$leftover" "$final_size" command.log kill-at.out $(for input in "${inputs[@]}"; do basename "$input"; done)
    check "$label $at: the inputs are unchanged" test "$(sha_of "${inputs[@]}")" = "$inputs_sha"

    # The next run starts from what a kill while finalizing left.
    if [ "$finalizing" = 1 ] && ! cmp -s "$output" "$saved"; then
      cp "$output" "$saved"
    fi
  done

  # A last complete run cleans up and writes a good snapshot.
  age_temp_files "$name"
  "$@" > "$dir/command.log" 2>&1
  check "$label: the run after the kills succeeds" test $? -eq 0
  check "$label: no temporary file is left at the end" test -z "$(temp_files "$name")"
  check "$label: the final snapshot verifies" "$HEXZ_SNAP" verify "$output"
  rm -f "$output" "$saved"
}

# Inputs: an incompressible image (so the output grows as fast as the input
# is read) and, for commit, an overlay with a few changed pages.
head -c $((image_mib * 1024 * 1024)) /dev/urandom > "$dir/image.raw"

# pack, slowed by a single zstd thread so that the poll observes each flush.
kill_series "pack" packed.hxz "$dir/image.raw" "$dir/image.raw" -- \
  "$HEXZ_SNAP" pack --compression zstd --level 9 --threads 1 "$dir/image.raw" "$dir/packed.hxz"

# commit of a base and an overlay with three changed pages.
"$HEXZ_SNAP" pack --compression lz4 "$dir/image.raw" "$dir/base.hxz" > /dev/null
check "commit: the base snapshot is written" test -f "$dir/base.hxz"
truncate -s $((image_mib * 1024 * 1024)) "$dir/disk.overlay"
cp "$dir/image.raw" "$dir/expected.raw"
for page in 0 1000 16383; do
  head -c 4096 /dev/urandom > "$dir/page"
  dd if="$dir/page" of="$dir/disk.overlay" bs=4096 seek=$page conv=notrunc status=none
  dd if="$dir/page" of="$dir/expected.raw" bs=4096 seek=$page conv=notrunc status=none
  printf "$(printf '\\x%02x\\x%02x\\x00\\x00\\x00\\x00\\x00\\x00' $((page & 255)) $((page >> 8)))" >> "$dir/disk.meta"
done
rm -f "$dir/page"

kill_series "commit" committed.hxz "$dir/expected.raw" \
  "$dir/base.hxz" "$dir/disk.overlay" "$dir/disk.meta" "$dir/image.raw" "$dir/expected.raw" -- \
  "$HEXZ_SNAP" commit --base "$dir/base.hxz" --overlay "$dir/disk.overlay" \
    --output "$dir/committed.hxz" --compression zstd --level 9 --threads 1

# A killed pack's temporary file is removed by the next writer into the
# same folder even when that one writes another output.
kill_at "$dir" first.hxz 1 "$dir/command.log" \
  "$HEXZ_SNAP" pack --compression zstd --level 9 --threads 1 "$dir/image.raw" "$dir/first.hxz"
leftover=$(temp_files first.hxz)
check "another output: the killed pack left its temporary file" test -n "$leftover"
age_temp_files first.hxz
"$HEXZ_SNAP" pack --compression lz4 "$dir/image.raw" "$dir/second.hxz" > "$dir/command.log" 2>&1
check "another output: the pack of another output succeeds" test $? -eq 0
check "another output: it removed the killed pack's temporary file" test -z "$(temp_files first.hxz)"
rm -f "$dir/second.hxz"

# hexz-snap snap of a running test guest, in each mode, killed at the
# start of capture phases (the debug log shows "Capture: phase NAME") and
# at about 1, 10, 50 and 99 % of the memory stream. The stream's progress
# is the size of the temporary file, against a complete snap in the same
# mode: the memory is nearly all of the file. A single zstd thread paces
# the stream so that the poll observes each 4 MiB flush.
#
# After each kill the output path keeps the previous snapshot (or a
# complete new one, when killed while finalizing). One temporary file is
# left, with no other file but the capture's marker and, after a kill in
# the disk phase, its copy folder. The .meta file is unchanged and the
# overlay differs at most in the page the guest writes. The next snap in
# the same mode then succeeds and takes over the killed run's marker. It
# resumes a machine the killed run left paused and reports it, restores
# the migration settings the killed run changed, and removes the leftover
# temporary file and copy folder. `hexz-snap resume` alone also undoes
# all of it: the machine runs, the settings are restored, the marker is
# gone.
guest=${HEXZ_TEST_GUEST:-}
qemu=$(command -v qemu-system-x86_64)
if [ -z "$guest" ] || [ ! -f "$guest" ] || [ -z "$qemu" ]; then
  ok "snap kills # SKIP the test guest or qemu-system-x86_64 is missing"
else
  # TCG: under the nested KVM of the build machines the guest's first
  # touch of each page is very slow. 40 MiB of pattern make a memory
  # stream of about ten 4 MiB flushes.
  accel=${HEXZ_TEST_ACCEL:-tcg}
  fill=40M
  [ "$accel" = tcg ] || fill=1M

  vm_dir="$dir/vm"
  mkdir -m 0700 "$vm_dir"
  qmp="$vm_dir/qmp.sock"
  disk_size=$((4 * 1024 * 1024))
  record_page=256   # the guest writes its record at 1 MiB

  head -c $disk_size /dev/zero > "$vm_dir/disk.raw"
  printf 'hexz kill test marker' | dd of="$vm_dir/disk.raw" bs=1 seek=65536 conv=notrunc status=none
  "$HEXZ_SNAP" pack "$vm_dir/disk.raw" "$vm_dir/base.hxz" > /dev/null
  cp "$vm_dir/disk.raw" "$vm_dir/disk.overlay"
  printf '\x00\x01\x00\x00\x00\x00\x00\x00' > "$vm_dir/disk.meta"
  meta_sha=$(sha_of "$vm_dir/disk.meta")

  "$qemu" -accel "$accel" -nodefaults -no-reboot -machine pc -m 64 -display none \
    -kernel "$guest" -append "fill=$fill interval=50" \
    -drive "file=$vm_dir/disk.overlay,format=raw,if=ide,cache=writethrough" \
    -qmp "unix:$qmp,server=on,wait=off" > "$vm_dir/qemu.log" 2>&1 &
  qemu_pid=$!
  pids+=("$qemu_pid")
  for _ in $(seq 200); do
    [ -S "$qmp" ] && break
    sleep 0.05
  done
  check "snap: QEMU ($accel) listens on its QMP socket" test -S "$qmp"

  # vm_query QUERY: prints the result of a QMP query, through a bare session.
  # QUERY is status (the run state), settings (the migration settings a
  # capture changes and restores: the events and background-snapshot
  # capabilities, max-bandwidth) or guest (the state word of the guest's
  # status area, 3 once the pattern is filled).
  vm_query () {
    /usr/bin/python3 - "$qmp" "$1" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
f = s.makefile('rw')
json.loads(f.readline())
def run(command, arguments=None):
    message = {'execute': command}
    if arguments:
        message['arguments'] = arguments
    f.write(json.dumps(message) + '\n')
    f.flush()
    while True:
        reply = json.loads(f.readline())
        if 'return' in reply or 'error' in reply:
            return reply.get('return')
run('qmp_capabilities')
query = sys.argv[2]
if query == 'status':
    print(run('query-status')['status'])
elif query == 'settings':
    capabilities = {c['capability']: c['state'] for c in run('query-migrate-capabilities')}
    parameters = run('query-migrate-parameters')
    print(f"events={capabilities.get('events')} background-snapshot={capabilities.get('background-snapshot')}"
          f" max-bandwidth={parameters.get('max-bandwidth')}")
elif query == 'guest':
    line = run('human-monitor-command', {'command-line': 'xp /1wx 0x200008'})
    print(int(line.split(':')[1], 16))
PY
  }

  # overlay_matches SAVED: the overlay equals SAVED outside the record page.
  overlay_matches () {
    /usr/bin/python3 - "$vm_dir/disk.overlay" "$1" "$record_page" <<'PY'
import sys
a, b, page = open(sys.argv[1], 'rb').read(), open(sys.argv[2], 'rb').read(), int(sys.argv[3])
assert len(a) == len(b), f'the overlay is {len(a)} bytes, was {len(b)}'
start, end = page * 4096, page * 4096 + 4096
assert a[:start] == b[:start], 'the overlay changed before the guest record page'
assert a[end:] == b[end:], 'the overlay changed after the guest record page'
PY
  }

  snap_command=("$HEXZ_SNAP" snap --socket "$qmp" --overlay "$vm_dir/disk.overlay"
                --base "$vm_dir/base.hxz" --output "$vm_dir/snap.hxz"
                --compression zstd --level 9 --threads 1)

  # snap_run MODE: a complete snap in MODE, with its output in snap.log.
  snap_run () {
    "${snap_command[@]}" --mode "$1" > "$vm_dir/snap.log" 2>&1
  }

  # The folder's files besides the output, its copy and a temporary file.
  vm_files=(disk.raw base.hxz disk.overlay disk.meta qemu.log qmp.sock snap.log overlay.saved)

  # copy_folders: the folders in which a capture creates its copy of the
  # overlay's pages (and unlinks at once), as a kill during the disk phase
  # may leave them. The next capture removes them once they are a few
  # seconds old.
  copy_folders () {
    local folder
    for folder in "$vm_dir"/.hexz-capture-??????; do
      [ -d "$folder" ] && basename "$folder"
    done
  }

  # The reference sizes are right only once the pattern is complete.
  for _ in $(seq 600); do
    [ "$(vm_query guest)" = 3 ] && break
    sleep 0.1
  done
  check "snap: the guest filled its memory" test "$(vm_query guest)" = 3
  cp "$vm_dir/disk.overlay" "$vm_dir/overlay.saved"
  settings=$(vm_query settings)

  # snap_kill MODE POINT: kills a snap in MODE at POINT, a percentage of the
  # memory stream or a phase name, and checks what it left and the next
  # snap.
  snap_kill () {
    local mode=$1 point=$2
    local label when finalizing=0 status replaced snap_status folders folder

    if [ "${point#[0-9]}" != "$point" ]; then
      label="snap $mode at $point %"
      when=$(( reference_size * point / 100 ))
      # A kill at the last flush of the memory may land after it.
      [ "$point" -ge 99 ] && finalizing=1
    else
      label="snap $mode at phase $point"
      when="phase:$point"
      [ "$point" = finalize ] && finalizing=1
    fi

    age_temp_files snap.hxz "$vm_dir"
    kill_at "$vm_dir" snap.hxz "$when" "$vm_dir/snap.log" \
      env G_MESSAGES_DEBUG=Hexz "${snap_command[@]}" --mode "$mode"
    folders=$(copy_folders)
    [ -z "$folders" ] || echo "# The kill left the copy folder $folders"
    check_after_kill "$label" "$vm_dir" snap.hxz "$vm_dir/saved.hxz" "$finalizing" "" "" \
      "$reference_size" "${vm_files[@]}" qmp.sock.hexz-capture $folders
    check "$label: the .meta file is unchanged" test "$(sha_of "$vm_dir/disk.meta")" = "$meta_sha"
    check "$label: the overlay changed only where the guest writes" overlay_matches "$vm_dir/overlay.saved"

    status=$(vm_query status)
    echo "# QEMU is $status after the kill"

    # The next snap finds the killed run's marker: it restores the
    # migration settings, resumes a machine the killed run paused, and
    # reports it. A run killed after the rename may have removed its
    # marker already.
    replaced=0
    cmp -s "$vm_dir/snap.hxz" "$vm_dir/saved.hxz" || replaced=1
    age_temp_files snap.hxz "$vm_dir"
    for folder in $folders; do
      touch -d '-1 minute' "$vm_dir/$folder"
    done
    snap_run "$mode"
    snap_status=$?
    check "$label: the next snap succeeds" test $snap_status -eq 0
    [ $snap_status -eq 0 ] || sed 's/^/# /' "$vm_dir/snap.log"
    if [ "$killed_size" != finished ] && [ $replaced = 0 ]; then
      check "$label: the next snap takes over the killed run's marker" \
        grep -q "by an earlier snapshot\|An earlier snapshot" "$vm_dir/snap.log"
    fi
    if [ "$status" != running ]; then
      check "$label: the next snap says it resumes the machine" \
        grep -q "left paused by an earlier snapshot" "$vm_dir/snap.log"
    fi
    check "$label: then the machine is running" test "$(vm_query status)" = running
    check "$label: then the migration settings are restored" test "$(vm_query settings)" = "$settings"
    check "$label: then the temporary files and the marker are gone" \
      test -z "$(temp_files snap.hxz "$vm_dir")$(copy_folders)" -a ! -e "$qmp.hexz-capture"
    check "$label: then the new snapshot verifies" "$HEXZ_SNAP" verify "$vm_dir/snap.hxz"
    cp "$vm_dir/snap.hxz" "$vm_dir/saved.hxz"
  }

  # snap_kill_resume MODE POINT: kills a snap in MODE at POINT, a phase or
  # a percentage of the memory stream. Then `hexz-snap resume` alone must
  # resume the machine, restore the migration settings and remove the marker.
  snap_kill_resume () {
    local mode=$1 point=$2 folder when label output
    if [ "${point#[0-9]}" != "$point" ]; then
      when=$(( reference_size * point / 100 ))
      label="snap $mode at $point %"
    else
      when="phase:$point"
      label="snap $mode at phase $point"
    fi
    kill_at "$vm_dir" snap.hxz "$when" "$vm_dir/snap.log" \
      env G_MESSAGES_DEBUG=Hexz "${snap_command[@]}" --mode "$mode"
    echo "# QEMU is $(vm_query status) after the kill, with $(vm_query settings)"
    check "$label: the kill leaves the marker" test -e "$qmp.hexz-capture"
    output=$("$HEXZ_SNAP" resume --socket "$qmp" 2>&1)
    echo "# hexz-snap resume: $output"
    check "$label: hexz-snap resume says it restored the settings" \
      grep -q "Restored the migration settings" <<< "$output"
    check "$label: hexz-snap resume leaves the machine running" \
      test "$(vm_query status)" = running
    check "$label: hexz-snap resume restores the migration settings" \
      test "$(vm_query settings)" = "$settings"
    check "$label: hexz-snap resume removes the marker" test ! -e "$qmp.hexz-capture"
    age_temp_files snap.hxz "$vm_dir"
    for folder in $(copy_folders); do
      touch -d '-1 minute' "$vm_dir/$folder"
    done
    snap_run "$mode"
    check "$label: the snap after the resume succeeds" test $? -eq 0
  }

  # The kill points of each mode. Paused: every phase, and the stream with
  # the machine paused. Background: the stream while the guest runs and
  # QEMU write-protects its memory, the pause before it and the resume
  # after it. Live: the stream of the running guest, then the disk copy
  # while QEMU keeps the machine paused after the stream.
  declare -A points=(
    [paused]="pause disk memory 1 10 50 99 resume merge finalize"
    [background]="pause 1 10 50 99 resume finalize"
    [live]="1 10 50 99 disk resume finalize"
  )
  for mode in paused background live; do
    # A complete snap gives the previous output and the reference size.
    snap_run "$mode"
    snap_status=$?
    check "snap $mode: a complete snap succeeds" test $snap_status -eq 0
    [ $snap_status -eq 0 ] || sed 's/^/# /' "$vm_dir/snap.log"
    check "snap $mode: the complete snapshot verifies" "$HEXZ_SNAP" verify "$vm_dir/snap.hxz"
    cp "$vm_dir/snap.hxz" "$vm_dir/saved.hxz"
    reference_size=$(stat -c %s "$vm_dir/snap.hxz")

    for point in ${points[$mode]}; do
      snap_kill "$mode" "$point"
    done
  done

  snap_kill_resume paused memory
  snap_kill_resume live disk
  snap_kill_resume background 50

  age_temp_files snap.hxz "$vm_dir"
  snap_run background
  check "snap: the snap after the kills succeeds" test $? -eq 0
  check "snap: no temporary file is left at the end" \
    test -z "$(temp_files snap.hxz "$vm_dir")$(copy_folders)"
  check "snap: the final snapshot verifies" "$HEXZ_SNAP" verify "$vm_dir/snap.hxz"
  check "snap: the migration settings are restored at the end" test "$(vm_query settings)" = "$settings"

  kill "$qemu_pid"
  wait "$qemu_pid" 2>/dev/null
fi

# The nbdkit plugin, once it is built: killed while a client writes, at
# about 1, 10, 50 and 99 % of the pages listed in `.meta`. Every listed page
# must contain the data the client wrote there, the page list must have
# whole entries without duplicates, and a new server must open the overlay
# and serve the base with the listed pages.
# In an AddressSanitizer build nbdkit loads the instrumented plugin with the
# runtime preloaded, and without leak detection (see tests/test-plugin.sh).
plugin="${HEXZ_BUILD_ROOT:-}/tools/hexz-plugin.so"
nbdkit=(nbdkit)
if [ -n "${HEXZ_ASAN_RUNTIME:-}" ]; then
  nbdkit=(env "LD_PRELOAD=$HEXZ_ASAN_RUNTIME" "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" nbdkit)
fi
if [ ! -f "$plugin" ] || ! command -v nbdkit > /dev/null || ! command -v qemu-io > /dev/null ||
   ! command -v qemu-img > /dev/null; then
  ok "plugin kills # SKIP the plugin, nbdkit or qemu-io is missing"
else
  socket="$dir/nbd.sock"
  overlay="$dir/vm.overlay"
  meta="$dir/vm.meta"
  write_size=16384
  n_writes=$((image_mib * 1024 * 1024 / write_size))
  n_pages=$((image_mib * 1024 * 1024 / 4096))
  base_sha=$(sha_of "$dir/base.hxz")

  # The client writes every 16 KiB piece once, in order, each with its own
  # byte pattern: piece i is filled with (i % 255) + 1.
  write_arguments=()
  for i in $(seq 0 $((n_writes - 1))); do
    write_arguments+=(-c "write -P $(( i % 255 + 1 )) $((i * write_size)) $write_size")
  done

  for point in 1 10 50 99; do
    rm -f "$overlay" "$meta" "$socket"
    "${nbdkit[@]}" --unix "$socket" --foreground --exit-with-parent "$plugin" \
      snapshot="$dir/base.hxz" overlay="$overlay" create=true 2> "$dir/nbdkit.log" &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 200); do
      [ -S "$socket" ] && break
      sleep 0.05
    done

    timeout 300 qemu-io -f raw "${write_arguments[@]}" "nbd+unix:///?socket=$socket" \
      > /dev/null 2>&1 &
    writer_pid=$!
    pids+=("$writer_pid")

    target=$(( n_pages * 8 * point / 100 ))
    while is_running "$server_pid" && is_running "$writer_pid"; do
      [ "$(stat -c %s "$meta" 2>/dev/null || echo 0)" -ge "$target" ] && break
    done
    kill -KILL "$server_pid"
    wait "$server_pid" 2>/dev/null
    wait "$writer_pid" 2>/dev/null
    listed=$(( $(stat -c %s "$meta") / 8 ))

    check "plugin killed at $point % ($listed of $n_pages pages listed)" test "$listed" -gt 0
    check "plugin at $point %: listed pages contain the written data" \
      /usr/bin/python3 - "$meta" "$overlay" "$write_size" <<'PY'
import struct, sys
meta, overlay, write_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(meta, 'rb').read()
assert len(data) % 8 == 0, f'.meta is {len(data)} bytes long, not a multiple of 8'
pages = [page for (page,) in struct.iter_unpack('<Q', data)]
assert len(pages) == len(set(pages)), 'the .meta file lists a page twice'
with open(overlay, 'rb') as f:
    for page in pages:
        f.seek(page * 4096)
        expected = bytes([(page * 4096 // write_size) % 255 + 1]) * 4096
        assert f.read(4096) == expected, f'listed page {page} does not contain its write'
PY
    check "plugin at $point %: the base snapshot is unchanged" test "$(sha_of "$dir/base.hxz")" = "$base_sha"

    # A new server serves the base with the listed pages replaced.
    /usr/bin/python3 - "$meta" "$dir/image.raw" "$dir/model.raw" "$write_size" <<'PY'
import struct, sys
meta, image, model, write_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
data = bytearray(open(image, 'rb').read())
for (page,) in struct.iter_unpack('<Q', open(meta, 'rb').read()):
    data[page * 4096:page * 4096 + 4096] = bytes([(page * 4096 // write_size) % 255 + 1]) * 4096
open(model, 'wb').write(data)
PY
    rm -f "$socket"
    "${nbdkit[@]}" --unix "$socket" --foreground --exit-with-parent "$plugin" \
      snapshot="$dir/base.hxz" overlay="$overlay" 2> "$dir/nbdkit.log" &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 200); do
      [ -S "$socket" ] && break
      is_running "$server_pid" || break
      sleep 0.05
    done
    check "plugin at $point %: a new server serves the listed pages over the base" \
      timeout 120 qemu-img compare -f raw -F raw "$dir/model.raw" "nbd+unix:///?socket=$socket"
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null
    rm -f "$dir/model.raw"
  done
fi

echo "1..$count"
