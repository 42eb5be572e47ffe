#!/usr/bin/env bash
# Initrd writing throughput: hermetic's cpio+zstd writer against
#   find | sort | cpio -o -H newc --reproducible | zstd
# on the same tree, at the same zstd level and thread count. A benchmark, not a test.
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

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

echo "tree: $tree ($(du -sh "$tree" 2>/dev/null | cut -f1)), zstd level $level, $threads threads"
# Warm the page cache so that both runs read from memory.
find "$tree" -type f -print0 | xargs -0 cat > /dev/null 2>&1 || true

t0=$(now)
"$ours" --uncompressed "$tree" "$work/ours.cpio"
t1=$(now)
(cd "$tree" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z |
  cpio -o0 -H newc --reproducible --quiet) > "$work/gnu.cpio"
t2=$(now)
echo "cpio only:   hermetic $(secs "$t0" "$t1") s   find|sort|cpio $(secs "$t1" "$t2") s   ($(stat -c %s "$work/gnu.cpio") bytes)"
if cmp -s "$work/ours.cpio" "$work/gnu.cpio"; then
  echo "             the two archives are byte-identical"
else
  echo "             the archives differ (hard links, files newer than the epoch, or directory link counts)"
fi
rm -f "$work/ours.cpio" "$work/gnu.cpio"

t0=$(now)
"$ours" --level "$level" --workers "$threads" "$tree" "$work/ours.cpio.zst"
t1=$(now)
(cd "$tree" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z |
  cpio -o0 -H newc --reproducible --quiet) | zstd -q -"$level" -T"$threads" > "$work/gnu.cpio.zst"
t2=$(now)
echo "cpio + zstd: hermetic $(secs "$t0" "$t1") s ($(stat -c %s "$work/ours.cpio.zst") bytes)   find|sort|cpio|zstd $(secs "$t1" "$t2") s ($(stat -c %s "$work/gnu.cpio.zst") bytes)"
