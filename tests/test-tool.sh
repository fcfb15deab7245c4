#!/bin/bash
# test-tool.sh: hexz-snap from the command line, as a TAP script
#
# SPDX-License-Identifier: LGPL-2.1-or-later

set -u

HEXZ_SNAP=${HEXZ_SNAP:?HEXZ_SNAP must name the built hexz-snap}
PYTHON=/usr/bin/python3

dir=$(mktemp -d "${TMPDIR:-/tmp}/hexz-test-tool-XXXXXX")
pids=()

cleanup () {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$dir"
}
trap cleanup EXIT

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

# check DESCRIPTION COMMAND...: passes when COMMAND succeeds.
check () {
  local description=$1
  shift
  if "$@"; then ok "$description"; else not_ok "$description"; fi
}

# run EXPECTED_STATUS ARGS...: runs hexz-snap, keeps stdout and stderr in
# $dir/stdout and $dir/stderr, and passes when the exit status matches.
run () {
  local expected=$1
  shift
  "$HEXZ_SNAP" "$@" >"$dir/stdout" 2>"$dir/stderr"
  local status=$?
  if [ "$status" -ne "$expected" ]; then
    echo "# hexz-snap $* exited with $status, expected $expected" >&2
    sed 's/^/# stderr: /' "$dir/stderr" >&2
    return 1
  fi
  return 0
}

json_field () {
  "$PYTHON" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval("d" + sys.argv[2]))' "$1" "$2"
}

mode_of () {
  stat -c %a "$1"
}

# One error line, starting with "hexz-snap: " and naming $1.
one_error_line () {
  [ "$(wc -l <"$dir/stderr")" -eq 1 ] &&
    grep -q '^hexz-snap: ' "$dir/stderr" &&
    grep -qF -- "$1" "$dir/stderr"
}

# A disk image with a hole, zeros, text and random bytes, and a size that is
# not a multiple of 4 KiB; a memory image of random bytes.
"$PYTHON" - "$dir" <<'EOF'
import os, random, sys
d = sys.argv[1]
rng = random.Random(7)
size = 3 * 1024 * 1024 + 5000
with open(os.path.join(d, "disk.img"), "wb") as f:
    f.truncate(size)
    f.seek(512 * 1024)
    f.write(b"\0" * (256 * 1024))
    f.write(b"hexz-snap test text, line after line.\n" * 20000)
    f.seek(2 * 1024 * 1024)
    f.write(bytes(rng.getrandbits(8) for _ in range(size - 2 * 1024 * 1024)))
with open(os.path.join(d, "memory.bin"), "wb") as f:
    f.write(bytes(rng.getrandbits(8) for _ in range(700 * 1024 + 3)))
EOF
image_size=$(stat -c %s "$dir/disk.img")

# Usage and help.
if run 0 --help && grep -q '^  pack ' "$dir/stdout" && grep -q '^  commit ' "$dir/stdout" &&
   grep -q '^  info ' "$dir/stdout" && grep -q '^  verify ' "$dir/stdout" && grep -q '^  extract ' "$dir/stdout"; then
  ok "--help lists the commands"
else
  not_ok "--help lists the commands"
fi
check "pack --help shows the compression options" \
  bash -c "'$HEXZ_SNAP' pack --help | grep -q -- '--block-size=SIZE'"
check "no command exits 2" run 2
check "unknown command exits 2" run 2 frobnicate
check "pack with one parameter exits 2" run 2 pack "$dir/disk.img"
check "unknown option exits 2" run 2 info --no-such-option "$dir/x"
check "invalid block size exits 2" run 2 pack --block-size 3K "$dir/disk.img" "$dir/never.hxz"
check "lz4 with a positive level exits 2" run 2 pack --level 5 "$dir/disk.img" "$dir/never.hxz"
check "commit without --base exits 2" run 2 commit --output "$dir/never.hxz"
check "the usage error names the missing --base" one_error_line "option --base"
check "snap with --socket alone exits 2" run 2 snap --socket "$dir/none.sock"
check "the usage error names every missing option" \
  one_error_line "options --overlay, --base, --output"
check "snap with a negative --live-bandwidth exits 2" \
  run 2 snap --socket "$dir/none.sock" --overlay "$dir/none.overlay" --base "$dir/none.hxz" \
    --output "$dir/never.hxz" --live --live-bandwidth -1
check "the usage error names --live-bandwidth" one_error_line "--live-bandwidth -1"
check "extract without a stream exits 2" run 2 extract "$dir/never.hxz"
check "usage error is one line naming the command" \
  bash -c "[ \$(wc -l <'$dir/stderr') -eq 1 ] && grep -q 'hexz-snap extract --help' '$dir/stderr'"
check "usage errors wrote no file" test ! -e "$dir/never.hxz"
cp "$dir/disk.img" "$dir/same.img"
check "pack onto its own image exits 1" run 1 pack "$dir/same.img" "$dir/same.img"
check "pack onto its own image keeps it" cmp "$dir/disk.img" "$dir/same.img"

# Existing outputs: a snapshot is replaced, another file only with --force,
# and a path that is not a regular file never.
echo "keep me" >"$dir/keep.txt"
check "pack onto an existing text file exits 1" run 1 pack "$dir/disk.img" "$dir/keep.txt"
check "the refusal names the file and --force" one_error_line "keep.txt” already exists"
check "the text file is kept" grep -qx "keep me" "$dir/keep.txt"
check "snap onto an existing text file exits 1" \
  run 1 snap --socket "$dir/none.sock" --overlay "$dir/none.overlay" --base "$dir/disk.hxz" \
    --output "$dir/keep.txt"
check "the text file is kept by snap" grep -qx "keep me" "$dir/keep.txt"
check "pack --force replaces it" run 0 pack --force "$dir/disk.img" "$dir/keep.txt"
check "pack replaces an existing snapshot" run 0 pack "$dir/disk.img" "$dir/keep.txt"
mkfifo "$dir/fifo"
check "extract onto a FIFO exits 1 even with --force" \
  run 1 extract --force --disk "$dir/fifo" "$dir/keep.txt"
check "the FIFO is kept" test -p "$dir/fifo"
ln -s keep.txt "$dir/link.hxz"
check "pack onto a symbolic link exits 1" run 1 pack --force "$dir/disk.img" "$dir/link.hxz"
check "the link is kept" test -L "$dir/link.hxz"
echo "keep me" >"$dir/keep.img"
check "extract onto an existing file exits 1" run 1 extract --disk "$dir/keep.img" "$dir/keep.txt"
check "extract --force replaces it" \
  bash -c "'$HEXZ_SNAP' extract --force --disk '$dir/keep.img' '$dir/keep.txt' && cmp '$dir/disk.img' '$dir/keep.img'"
# Zero pages inside data chunks stay holes in the extracted image.
truncate -s 8M "$dir/sparse.img"
printf 'one sector of text' | dd of="$dir/sparse.img" bs=512 seek=100 conv=notrunc 2>/dev/null
check "pack of a nearly empty image exits 0" run 0 pack "$dir/sparse.img" "$dir/sparse.hxz"
check "extract of a nearly empty image exits 0" \
  run 0 extract --disk "$dir/sparse.out" "$dir/sparse.hxz"
check "the nearly empty image extracts byte for byte" cmp "$dir/sparse.img" "$dir/sparse.out"
check "the extracted image keeps its zero pages as holes" \
  test "$(du -k "$dir/sparse.out" | cut -f1)" -le 64
check "extract of an absent memory stream exits 1" \
  run 1 extract --disk "$dir/none.img" --memory "$dir/none.mem" "$dir/keep.txt"
check "and writes no disk file either" test ! -e "$dir/none.img"

# pack, info, verify, extract.
check "pack exits 0" run 0 pack "$dir/disk.img" "$dir/disk.hxz"
check "pack prints no progress on a pipe" test ! -s "$dir/stderr"
check "packed snapshot is mode 0600" test "$(mode_of "$dir/disk.hxz")" = 600
check "info exits 0" run 0 info "$dir/disk.hxz"
check "info shows the disk size" grep -q "($image_size bytes)" "$dir/stdout"
check "info --json exits 0" run 0 info --json "$dir/disk.hxz"
cp "$dir/stdout" "$dir/info.json"
check "info --json disk size" test "$(json_field "$dir/info.json" '["disk_size"]')" = "$image_size"
check "info --json block size and memory" \
  test "$(json_field "$dir/info.json" '["block_size"], d["has_memory"], d["parent"]')" = "(65536, False, None)"
check "verify exits 0" run 0 verify "$dir/disk.hxz"
check "info --blocks counts every block" \
  bash -c "'$HEXZ_SNAP' info --blocks --json '$dir/disk.hxz' >'$dir/blocks.json' &&
           $PYTHON -c 'import json, sys
b = json.load(open(sys.argv[1]))[\"disk_blocks\"]
assert b[\"blocks\"] == ($image_size + 65535) // 65536, b
assert b[\"blocks\"] == sum(b[k] for k in (\"zero\", \"parent\", \"lz4\", \"zstd\", \"raw\", \"shared\")), b
assert b[\"zero\"] >= 4, b
assert b[\"lz4\"] >= 1, b
assert b[\"raw\"] >= 1, b' '$dir/blocks.json'"
check "info --blocks prints the counts" \
  bash -c "'$HEXZ_SNAP' info --blocks '$dir/disk.hxz' | grep -q 'blocks: .* zero, .* shared\$'"
check "info --blocks counts one block in the singular" \
  bash -c "head -c 1000 '$dir/disk.img' >'$dir/one-block.img' &&
           '$HEXZ_SNAP' pack '$dir/one-block.img' '$dir/one-block.hxz' >/dev/null &&
           '$HEXZ_SNAP' info --blocks '$dir/one-block.hxz' | grep -q '^  1 block: .* zero, .* shared\$'"
check "verify has no --blocks" run 2 verify --blocks "$dir/disk.hxz"
check "extract --disk exits 0" run 0 extract "$dir/disk.hxz" --disk "$dir/disk.out"
check "extracted disk equals the image" cmp "$dir/disk.img" "$dir/disk.out"
check "extracted disk is mode 0600" test "$(mode_of "$dir/disk.out")" = 600
for threads in 1 3; do
  check "extract --threads $threads equals the image" \
    bash -c "'$HEXZ_SNAP' extract --threads $threads '$dir/disk.hxz' --disk '$dir/disk.t$threads' &&
             cmp '$dir/disk.img' '$dir/disk.t$threads'"
done
check "extract with 2000 threads exits 2" run 2 extract --threads 2000 "$dir/disk.hxz" --disk "$dir/never.out"

# Another codec, block size and a memory image, with a JSON summary.
check "pack with zstd, 1M blocks and memory exits 0" \
  run 0 pack --compression zstd --level 3 --block-size 1M --threads 2 \
    --memory "$dir/memory.bin" --message "packed by the test" --json \
    "$dir/disk.img" "$dir/full.hxz"
cp "$dir/stdout" "$dir/pack.json"
check "pack --json summary" \
  test "$(json_field "$dir/pack.json" '["block_size"], d["disk_size"], d["memory_size"]')" = \
       "(1048576, $image_size, $(stat -c %s "$dir/memory.bin"))"
check "extract --memory equals the memory image" \
  bash -c "'$HEXZ_SNAP' extract '$dir/full.hxz' --memory '$dir/memory.out' && cmp '$dir/memory.bin' '$dir/memory.out'"
check "verify --json reports a valid file" \
  bash -c "'$HEXZ_SNAP' verify --json '$dir/full.hxz' >'$dir/verify.json' && [ \"\$($PYTHON -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"valid\"])' '$dir/verify.json')\" = True ]"

# Dictionaries: pack and commit train one by default from 4 MiB of disk.
"$PYTHON" - "$dir" <<'EOF'
import os, random, sys
rng = random.Random(11)
words = [b"snapshot ", b"block ", b"virtual ", b"machine ", b"memory ", b"disk ", b"the ", b"of\n"]
data = bytearray()
while len(data) < 6 * 1024 * 1024:
    data += rng.choice(words)
with open(os.path.join(sys.argv[1], "text.img"), "wb") as f:
    f.write(data[:6 * 1024 * 1024 + 777])
EOF

# Prints the number of disk blocks of $1 that use the file's dictionary.
dictionary_blocks () {
  "$HEXZ_SNAP" info --blocks --json "$1" >"$dir/dictionary.json" &&
    json_field "$dir/dictionary.json" '["disk_blocks"]["dictionary"]'
}

check "pack of 6 MiB of text exits 0" run 0 pack "$dir/text.img" "$dir/text.hxz"
check "pack trains an LZ4 dictionary by default" test "$(dictionary_blocks "$dir/text.hxz")" -gt 0
check "info --blocks names the dictionary blocks" \
  bash -c "'$HEXZ_SNAP' info --blocks '$dir/text.hxz' | grep -q ' blocks use the file’s dictionary\$'"
check "the LZ4 dictionary file extracts byte for byte" \
  bash -c "'$HEXZ_SNAP' extract '$dir/text.hxz' --disk '$dir/text.out' && cmp '$dir/text.img' '$dir/text.out'"
check "pack --no-dictionary exits 0" run 0 pack --no-dictionary "$dir/text.img" "$dir/plain.hxz"
check "pack --no-dictionary trains none" test "$(dictionary_blocks "$dir/plain.hxz")" -eq 0
check "the dictionary makes the file smaller" \
  test "$(stat -c %s "$dir/text.hxz")" -lt "$(stat -c %s "$dir/plain.hxz")"
check "pack with zstd trains a zstd dictionary by default" \
  bash -c "'$HEXZ_SNAP' pack --compression zstd '$dir/text.img' '$dir/zstd.hxz' >/dev/null && '$HEXZ_SNAP' verify '$dir/zstd.hxz' >/dev/null"
# Here zstd's 112 KiB dictionary would save less than its own size, so the
# writer drops it: the default may never make the file larger.
check "pack with zstd --no-dictionary exits 0" \
  run 0 pack --compression zstd --no-dictionary "$dir/text.img" "$dir/zstd-plain.hxz"
check "the default zstd file is no larger than without a dictionary" \
  test "$(stat -c %s "$dir/zstd.hxz")" -le "$(stat -c %s "$dir/zstd-plain.hxz")"
head -c 3M "$dir/text.img" >"$dir/small-text.img"
check "pack of 3 MiB of text exits 0" run 0 pack "$dir/small-text.img" "$dir/small-default.hxz"
check "pack of 3 MiB trains none by default" test "$(dictionary_blocks "$dir/small-default.hxz")" -eq 0
check "pack --dictionary trains one on 3 MiB" \
  bash -c "'$HEXZ_SNAP' pack --dictionary '$dir/small-text.img' '$dir/small.hxz' >/dev/null && '$HEXZ_SNAP' verify '$dir/small.hxz' >/dev/null"
check "the 3 MiB file uses its dictionary" test "$(dictionary_blocks "$dir/small.hxz")" -gt 0
check "--dictionary with raw compression exits 2" \
  run 2 pack --dictionary --compression raw "$dir/text.img" "$dir/never.hxz"
check "--dictionary with --no-dictionary exits 2" \
  run 2 pack --dictionary --no-dictionary "$dir/text.img" "$dir/never.hxz"
check "commit trains a dictionary by default" \
  bash -c "'$HEXZ_SNAP' commit --base '$dir/plain.hxz' --output '$dir/commit-dictionary.hxz' >/dev/null"
check "the committed file uses its dictionary" \
  test "$(dictionary_blocks "$dir/commit-dictionary.hxz")" -gt 0
check "commit --no-dictionary trains none" \
  bash -c "'$HEXZ_SNAP' commit --no-dictionary --base '$dir/text.hxz' --output '$dir/commit-plain.hxz' >/dev/null &&
           test \"\$('$HEXZ_SNAP' info --blocks --json '$dir/commit-plain.hxz' | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)[\"disk_blocks\"][\"dictionary\"])')\" -eq 0"
check "the committed files read as the image" \
  bash -c "'$HEXZ_SNAP' extract '$dir/commit-dictionary.hxz' --disk '$dir/commit1.out' && cmp '$dir/text.img' '$dir/commit1.out' &&
           '$HEXZ_SNAP' extract '$dir/commit-plain.hxz' --disk '$dir/commit2.out' && cmp '$dir/text.img' '$dir/commit2.out'"

# commit: an overlay with data in page 5 and a zeroed page 9 (a hole).
"$PYTHON" - "$dir" "$image_size" <<'EOF'
import os, struct, sys
d, size = sys.argv[1], int(sys.argv[2])
page5 = bytes((i * 13 + 5) & 0xff for i in range(4096))
with open(os.path.join(d, "vm.overlay"), "wb") as f:
    f.truncate(size)
    f.seek(5 * 4096)
    f.write(page5)
with open(os.path.join(d, "vm.meta"), "wb") as f:
    f.write(struct.pack("<QQQ", 9, 5, 9))
with open(os.path.join(d, "disk.img"), "rb") as f:
    image = bytearray(f.read())
image[5 * 4096:6 * 4096] = page5
image[9 * 4096:10 * 4096] = bytes(4096)
with open(os.path.join(d, "expected.img"), "wb") as f:
    f.write(image)
EOF
check "commit --thin exits 0" \
  run 0 commit --base "$dir/disk.hxz" --overlay "$dir/vm.overlay" --memory "$dir/memory.bin" \
    --output "$dir/thin.hxz" --thin --message "thin commit" --json
cp "$dir/stdout" "$dir/commit.json"
check "commit --json names the parent" \
  test "$(json_field "$dir/commit.json" '["parent"]["id"]')" = "$(json_field "$dir/info.json" '["id"]')"
check "thin commit merges the overlay" \
  bash -c "'$HEXZ_SNAP' extract '$dir/thin.hxz' --disk '$dir/thin.out' && cmp '$dir/expected.img' '$dir/thin.out'"
check "thick commit with 4K blocks merges the overlay" \
  bash -c "'$HEXZ_SNAP' commit --base '$dir/disk.hxz' --overlay '$dir/vm.overlay' --output '$dir/thick.hxz' --block-size 4K >/dev/null &&
           '$HEXZ_SNAP' extract '$dir/thick.hxz' --disk '$dir/thick.out' && cmp '$dir/expected.img' '$dir/thick.out'"
check "committed snapshot is mode 0600" test "$(mode_of "$dir/thin.hxz")" = 600
check "thin commit on a thin snapshot reads the same" \
  bash -c "'$HEXZ_SNAP' commit --base '$dir/thin.hxz' --output '$dir/chain.hxz' --thin >/dev/null &&
           '$HEXZ_SNAP' extract '$dir/chain.hxz' --disk '$dir/chain.out' && cmp '$dir/expected.img' '$dir/chain.out'"

# info on a thin snapshot whose parent is missing or replaced still shows
# the file's own fields and the parent's expected path and id, then fails.
mkdir "$dir/orphan"
cp "$dir/thin.hxz" "$dir/orphan/thin.hxz"
check "info on a snapshot whose parent is missing exits 1" run 1 info "$dir/orphan/thin.hxz"
check "info shows the snapshot's own id" \
  grep -q "$(json_field "$dir/commit.json" '["id"]')" "$dir/stdout"
check "info shows the missing parent's path and id" \
  grep -q "disk.hxz ($(json_field "$dir/info.json" '["id"]'))" "$dir/stdout"
check "info names the missing parent in its error" one_error_line "is missing"
check "info --json on a snapshot whose parent is missing exits 1" \
  run 1 info --json "$dir/orphan/thin.hxz"
check "info --json gives the parent's expected id" \
  test "$(json_field "$dir/stdout" '["parent"]["id"]')" = "$(json_field "$dir/info.json" '["id"]')"
cp "$dir/thick.hxz" "$dir/orphan/disk.hxz"
check "info --blocks on a snapshot whose parent was replaced exits 1" \
  run 1 info --blocks "$dir/orphan/thin.hxz"
check "info names the replaced parent in its error" one_error_line "was replaced"
check "info still shows the snapshot's own fields" grep -q "thin commit" "$dir/stdout"

# The output may not replace the overlay or its .meta, even with --force.
sha256sum "$dir/vm.overlay" "$dir/vm.meta" >"$dir/inputs.sha256"
for victim in vm.overlay vm.meta; do
  check "commit --force onto $victim exits 1" \
    run 1 commit --force --base "$dir/disk.hxz" --overlay "$dir/vm.overlay" --output "$dir/$victim"
  check "the refusal names $victim as an input" one_error_line "is the input file"
done
check "the overlay and .meta are unchanged" sha256sum --quiet -c "$dir/inputs.sha256"

# An overlay that no machine has locked gets a warning before snap connects.
check "snap of an overlay nobody uses exits 1 without a monitor" \
  run 1 snap --socket "$dir/none.sock" --overlay "$dir/vm.overlay" --base "$dir/disk.hxz" \
    --output "$dir/never.hxz"
check "snap warns that no machine uses the overlay" \
  grep -q "is not in use by any running machine" "$dir/stderr"

# Nor the base, thick or thin: thin snapshots made on it would break.
sha256sum "$dir/disk.hxz" >"$dir/base.sha256"
check "a thick commit onto its base exits 1" \
  run 1 commit --base "$dir/disk.hxz" --overlay "$dir/vm.overlay" --output "$dir/disk.hxz"
check "the refusal names the base" one_error_line "reads it as its base"
check "a thin commit onto its base exits 1" \
  run 1 commit --thin --base "$dir/disk.hxz" --overlay "$dir/vm.overlay" --output "$dir/disk.hxz"
check "the base is unchanged" sha256sum --quiet -c "$dir/base.sha256"

# An overlay that records another base is refused.
cp "$dir/vm.overlay" "$dir/other.overlay"
cp "$dir/vm.meta" "$dir/other.meta"
if "$PYTHON" -c 'import os, sys
os.setxattr(sys.argv[1], "user.hexz.base-id", b"00000000-0000-4000-8000-000000000000")' \
     "$dir/other.overlay" 2>/dev/null; then
  check "commit of an overlay made on another base exits 1" \
    run 1 commit --base "$dir/disk.hxz" --overlay "$dir/other.overlay" --output "$dir/other.hxz"
  check "the error names the recorded base" one_error_line "id 00000000-0000-4000-8000"
else
  ok "commit of an overlay made on another base exits 1 # SKIP no user extended attributes here"
fi

# An overlay larger than the base's disk needs --allow-grow.
cp "$dir/vm.overlay" "$dir/grown.overlay"
cp "$dir/vm.meta" "$dir/grown.meta"
truncate -s $((image_size + 8192)) "$dir/grown.overlay"
check "overlay larger than the base exits 1" \
  run 1 commit --base "$dir/disk.hxz" --overlay "$dir/grown.overlay" --output "$dir/grown.hxz"
check "larger overlay error names the base and --allow-grow" \
  bash -c "grep -qF '$dir/disk.hxz' '$dir/stderr' && grep -qF -- '--allow-grow' '$dir/stderr'"
check "--allow-grow commits the larger disk" \
  bash -c "'$HEXZ_SNAP' commit --base '$dir/disk.hxz' --overlay '$dir/grown.overlay' --output '$dir/grown.hxz' --allow-grow --json >'$dir/grown.json' &&
           [ \"\$($PYTHON -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"disk_size\"])' '$dir/grown.json')\" = $((image_size + 8192)) ]"

# Failures: one line naming the file, exit status 1.
check "info on a missing file exits 1" run 1 info "$dir/missing.hxz"
check "missing file error is one line naming it" one_error_line "$dir/missing.hxz"
printf '\012\000\000\000' >"$dir/bad.meta"
cp "$dir/vm.overlay" "$dir/bad.overlay"
check "commit with a damaged .meta exits 1 naming it" \
  bash -c "! '$HEXZ_SNAP' commit --base '$dir/disk.hxz' --overlay '$dir/bad.overlay' --output '$dir/bad.hxz' 2>'$dir/stderr' &&
           grep -qF '$dir/bad.meta' '$dir/stderr' && [ ! -e '$dir/bad.hxz' ]"

# Flips one bit of the byte in the middle of $1, inside its blocks.
flip_middle_byte () {
  "$PYTHON" - "$1" <<'EOF'
import os, sys
middle = os.path.getsize(sys.argv[1]) // 2
with open(sys.argv[1], "r+b") as f:
    f.seek(middle)
    byte = f.read(1)
    f.seek(middle)
    f.write(bytes([byte[0] ^ 0x40]))
EOF
}

# A corrupted copy: one byte flipped in the middle, inside the blocks.
cp "$dir/full.hxz" "$dir/corrupt.hxz"
flip_middle_byte "$dir/corrupt.hxz"
check "verify of a corrupted file exits 1" run 1 verify "$dir/corrupt.hxz"
check "corruption error is one line naming the file" one_error_line "$dir/corrupt.hxz"
check "extract of a corrupted file exits 1" \
  run 1 extract --threads 3 "$dir/corrupt.hxz" --disk "$dir/corrupt.out" --memory "$dir/corrupt.mem"
check "failed extract leaves no output" \
  bash -c "[ ! -e '$dir/corrupt.out' ] && [ ! -e '$dir/corrupt.mem' ] && ! ls -A '$dir' | grep -q '^\\.corrupt\\.'"
check "verify --json reports a truncated file as invalid" \
  bash -c "head -c 1000 '$dir/full.hxz' >'$dir/short.hxz';
           ! '$HEXZ_SNAP' verify --json '$dir/short.hxz' >'$dir/short.json' 2>/dev/null &&
           [ \"\$($PYTHON -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"valid\"])' '$dir/short.json')\" = False ]"

# verify checks a thin snapshot's parents: a chain of two and of three
# files over a base with one damaged byte in its blocks.
mkdir "$dir/chain"
"$HEXZ_SNAP" pack "$dir/disk.img" "$dir/chain/base.hxz" >/dev/null &&
  "$HEXZ_SNAP" commit --base "$dir/chain/base.hxz" --output "$dir/chain/thin.hxz" --thin >/dev/null &&
  "$HEXZ_SNAP" commit --base "$dir/chain/thin.hxz" --output "$dir/chain/thin2.hxz" --thin >/dev/null
check "verify of an intact chain of three exits 0" run 0 verify "$dir/chain/thin2.hxz"
flip_middle_byte "$dir/chain/base.hxz"
check "verify of a thin snapshot over a damaged base exits 1" run 1 verify "$dir/chain/thin.hxz"
check "its error is one line naming the base" one_error_line "$dir/chain/base.hxz"
check "verify of a chain of three over a damaged base exits 1" run 1 verify "$dir/chain/thin2.hxz"
check "its error is one line naming the base" one_error_line "$dir/chain/base.hxz"
check "verify --json reports the chain as invalid" \
  bash -c "! '$HEXZ_SNAP' verify --json '$dir/chain/thin2.hxz' >'$dir/chain.json' 2>/dev/null &&
           [ \"\$($PYTHON -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"valid\"])' '$dir/chain.json')\" = False ]"

# Interrupting: SIGINT during a slow pack leaves no output and no
# temporary file behind.
head -c $((48 * 1024 * 1024)) /dev/urandom >"$dir/big.img"
"$HEXZ_SNAP" pack --compression zstd --level 19 --block-size 4K --threads 1 \
  "$dir/big.img" "$dir/big.hxz" 2>"$dir/sigint.err" &
pid=$!
pids+=("$pid")
# Interrupt once the temporary output exists, so the pack is under way.
for _ in $(seq 100); do
  ls -A "$dir" | grep -qF '.big.hxz.' && break
  sleep 0.05
done
kill -INT "$pid"
wait "$pid"
status=$?
pids=()
check "SIGINT stops pack with exit 1" test "$status" -eq 1
check "SIGINT leaves no output or temporary file" \
  bash -c "[ ! -e '$dir/big.hxz' ] && [ -z \"\$(ls -A '$dir' | grep -F '.big.hxz')\" ]"

# The manual page lists each command's options as its --help shows them.
source_dir=${G_TEST_SRCDIR:-$(dirname "$0")}
for command in pack commit info verify extract boot snap restore resume; do
  "$HEXZ_SNAP" "$command" --help >"$dir/help-$command.txt" 2>&1
  check "the manual page lists the options of $command" \
    "$PYTHON" "$source_dir/hexz-check-manpage.py" "$HEXZ_BUILD_ROOT/doc/hexz-snap.1" \
      "$command" "$dir/help-$command.txt"
done

# The plan comes last, so adding a check needs no count to update.
echo "1..$count"
exit 0
