#!/usr/bin/env bash
# Initrd writing throughput: hermetic's cpio (+ zstd) writer against
#   find | sort | cpio -o -H newc --reproducible (| zstd)
# on the same tree, at the same zstd level and thread count. A benchmark, not a test.
# Prints wall-clock seconds and CPU seconds (user + system, all threads and processes):
# on a busy machine the CPU seconds are the fairer comparison.
#
#   scripts/bench-initrd.sh [TREE]        (default TREE: /usr/share)
#   LEVEL=19 THREADS=2 scripts/bench-initrd.sh /usr
set -euo pipefail
cd "$(dirname "$0")/.."

tree=${1:-/usr/share}
level=${LEVEL:-3}
threads=${THREADS:-$(nproc)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --quiet --release --example initrd
ours=${CARGO_TARGET_DIR:-target}/release/examples/initrd

# `time` of a pipeline: "<wall> <cpu>" in seconds.
TIMEFORMAT='%R %U %S'
measure() {
  local t
  t=$( { time "$@" > /dev/null 2>&1; } 2>&1 )
  awk '{ printf "%6.2f s wall %6.2f s cpu", $1, $2 + $3 }' <<< "$t"
}

gnu_cpio() {
  (cd "$tree" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z |
    cpio -o0 -H newc --reproducible --quiet)
}
gnu_plain() { gnu_cpio > "$work/gnu.cpio"; }
gnu_zstd() { gnu_cpio | zstd -q -"$level" -T"$threads" > "$work/gnu.cpio.zst"; }
ours_plain() { "$ours" --uncompressed "$tree" "$work/ours.cpio"; }
ours_zstd() { "$ours" --level "$level" --workers "$threads" "$tree" "$work/ours.cpio.zst"; }

echo "tree: $tree ($(du -sh "$tree" 2>/dev/null | cut -f1)), zstd level $level, $threads threads, load $(cut -d' ' -f1 /proc/loadavg)"
# Warm the page cache so that every run reads from memory.
find "$tree" -type f -print0 | xargs -0 cat > /dev/null 2>&1 || true

echo "cpio:        hermetic $(measure ours_plain)   find|sort|cpio $(measure gnu_plain)"
if cmp -s "$work/ours.cpio" "$work/gnu.cpio"; then
  echo "             byte-identical archives ($(stat -c %s "$work/gnu.cpio") bytes)"
else
  echo "             archives differ (hard links, files newer than the epoch, or directory link counts)"
fi
rm -f "$work/ours.cpio" "$work/gnu.cpio"
echo "cpio + zstd: hermetic $(measure ours_zstd)   find|sort|cpio|zstd $(measure gnu_zstd)"
echo "             sizes: hermetic $(stat -c %s "$work/ours.cpio.zst") bytes, zstd CLI $(stat -c %s "$work/gnu.cpio.zst") bytes"
