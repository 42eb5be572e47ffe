#!/bin/sh
# Benchmark of the kernel build (not run in CI): `hermetic build gcp` of a copy of this
# project — the full seed kernel (Debian's config.amd64_none_cloud-amd64 + kernel/configs/*,
# kernel/patches/*) built from the pinned source in the sandbox — cold into an empty store and
# again cached, with wall time and peak memory from /usr/bin/time -v; then the same source,
# patches and final .config built by hand with `make -jN bzImage` in the same pinned tools
# tree (through bubblewrap, no hermetic) for comparison. Prints the figures side by side and
# the SHA-256 of each bzImage (they agree when the by-hand build uses the same path and
# KBUILD_* values).
#
# Usage: scripts/bench-kernel.sh [WORKDIR]   (default: a new directory under /var/tmp)
#   COMPARE=DIR  also compare the kernel and UKI with those of an earlier build's output dir
#   JOBS=N       make -jN of the by-hand build (default 2; hermetic uses every CPU)
# Needs: cargo, python3, /usr/bin/time (package `time`), bwrap (package `bubblewrap`), about
# 5 GB of disk in WORKDIR, the Debian mirror of the host's apt configuration.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /var/tmp/hermetic-bench-kernel.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
jobs=${JOBS:-2}
echo "bench-kernel: work directory $work"

for tool in /usr/bin/time bwrap cargo python3; do
  command -v "$tool" >/dev/null || { echo "bench-kernel: $tool is missing" >&2; exit 1; }
done

cargo build --release --manifest-path "$repo/Cargo.toml" --bin hermetic
hermetic="${CARGO_TARGET_DIR:-$repo/target}/release/hermetic"

# A copy of the project, its own store: nothing is cached.
project="$work/project"
store="$work/store"
mkdir -p "$project/recipes"
cp "$repo/hermetic.toml" "$repo/pins.lock" "$project/"
cp -r "$repo/keys" "$repo/kernel" "$project/"
[ -d "$repo/overlays" ] && cp -r "$repo/overlays" "$project/"
cp "$repo/recipes/base.toml" "$repo/recipes/gcp.toml" "$project/recipes/"
h() { "$hermetic" -C "$project" --store "$store" "$@"; }
# The committed lock may name versions the mirror has dropped; lock afresh if fetch fails.
h lock
h fetch || { h lock --update && h fetch; }

field() { sed -n "s/^[[:space:]]*$2: //p" "$1"; }
wall() { field "$1" 'Elapsed (wall clock) time (h:mm:ss or m:ss)'; }
rss() { field "$1" 'Maximum resident set size (kbytes)'; }

if [ -s "$work/cold.json" ] && [ -s "$work/cached.json" ]; then
  # A rerun in the same WORKDIR (e.g. after the by-hand part failed) keeps the measured runs.
  echo "bench-kernel: reusing the cold and cached runs measured earlier in $work"
else
  # 1. Cold: every step, the kernel among them.
  /usr/bin/time -v -o "$work/time-cold.txt" \
    "$hermetic" -C "$project" --store "$store" --json build gcp --jobs "$jobs" --output "$work/out" \
    > "$work/cold.json"
  # 2. Cached: nothing changed, nothing runs.
  /usr/bin/time -v -o "$work/time-cached.txt" \
    "$hermetic" -C "$project" --store "$store" --json build gcp --jobs "$jobs" --output "$work/out" \
    > "$work/cached.json"
fi

step() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
step = next(s for s in report["steps"] if s["name"].endswith("/" + sys.argv[2]))
print(step[sys.argv[3]])
PY
}
kernel_seconds=$(step "$work/cold.json" kernel seconds)
kernel_state=$(step "$work/cached.json" kernel state)
kernel_entry=$(step "$work/cold.json" kernel path)
tools=$(step "$work/cold.json" kernel-tools path)/tree

# 3. By hand: the same source deb, patches and final .config, `make -jN bzImage` in the same
#    tools tree, at the same path (/work/build) with the same KBUILD_* values.
source_deb=$(python3 - "$project/pins.lock" <<'PY'
import sys, tomllib
lock = tomllib.load(open(sys.argv[1], "rb"))
print(next(p["sha256"] for p in lock["package"] if p["name"] == "linux-source-6.12"))
PY
)
hand="$work/hand"
rm -rf "$hand" && mkdir -p "$hand/build"
dpkg-deb --fsys-tarfile "$store/v1/blobs/sha256/$source_deb" \
  | tar -xOf - --wildcards './usr/src/linux-source-*.tar.xz' \
  | tar -xJf - --no-same-owner --strip-components=1 -C "$hand/build"
for p in "$repo"/kernel/patches/*.patch; do
  [ -e "$p" ] && patch -d "$hand/build" -p1 --batch --forward --silent -i "$p"
done
cp "$kernel_entry/files/config" "$hand/build/.config"
/usr/bin/time -v -o "$work/time-hand.txt" \
  bwrap --tmpfs / --ro-bind "$tools/usr" /usr --ro-bind "$tools/etc" /etc \
    --symlink usr/bin /bin --symlink usr/sbin /sbin --symlink usr/lib /lib \
    --symlink usr/lib64 /lib64 --dev /dev --proc /proc --tmpfs /tmp --dir /work \
    --bind "$hand/build" /work/build --chdir /work/build --unshare-net --clearenv \
    --unshare-uts --hostname mkosi \
    --setenv PATH /usr/bin:/bin --setenv LC_ALL C.UTF-8 --setenv TZ UTC \
    --setenv SOURCE_DATE_EPOCH 0 \
    --setenv KBUILD_BUILD_TIMESTAMP "Fri Jun  5 15:58:00 CEST 1971" \
    --setenv KBUILD_BUILD_USER mkosi --setenv KBUILD_BUILD_HOST mkosi \
    --setenv LOCALVERSION -mkosi-cloud \
    sh -c "rm -f .version && make -j$jobs bzImage" > "$work/hand.log" 2>&1

sha() { sha256sum "$1" | cut -d' ' -f1; }
echo
echo "== full seed kernel, $(nproc) CPUs =="
printf '%-40s %16s %16s %16s\n' "" "hermetic cold" "hermetic cached" "make by hand"
printf '%-40s %16s %16s %16s\n' "wall clock (whole command)" "$(wall "$work/time-cold.txt")" "$(wall "$work/time-cached.txt")" "$(wall "$work/time-hand.txt")"
printf '%-40s %16s %16s %16s\n' "peak memory (max RSS, KiB)" "$(rss "$work/time-cold.txt")" "$(rss "$work/time-cached.txt")" "$(rss "$work/time-hand.txt")"
printf '%-40s %16s %16s %16s\n' "kernel step" "${kernel_seconds%.*} s" "$kernel_state" "make -j$jobs bzImage"
echo "bzImage, hermetic: $(sha "$kernel_entry/files/bzImage")"
echo "bzImage, by hand:  $(sha "$hand/build/arch/x86/boot/bzImage")"
echo "kernel release: $(cat "$kernel_entry/files/kernelrelease")"
if [ -n "${COMPARE:-}" ]; then
  for f in gcp_latest.vmlinuz gcp_latest.efi gcp_latest-import.tar.gz; do
    if cmp -s "$COMPARE/$f" "$work/out/$f"; then echo "same as $COMPARE: $f"; else echo "DIFFERS from $COMPARE: $f"; fi
  done
fi
