#!/usr/bin/env bash
# Benchmark of shared caches (not a test, not run in CI): a cold `hermetic build TARGET` into an
# empty store, against a warm-cache build of the same target into another empty store that
# takes the pins and the signed step outputs from a registry. Prints both wall times and the
# bytes moved (from the mirror, to and from the registry).
#
#   scripts/bench-cache.sh [TARGET]      TARGET defaults to `base`; `gcp` builds the kernel
#                                        cold (20-40 minutes on two cores).
#   HERMETIC_BIN=target/debug/hermetic scripts/bench-cache.sh   times that binary instead of
#                                        building a release one.
#
# The warm-cache build runs in a fresh `git clone` of this repository (another working
# directory, as on another machine). To measure against a cold build made before (a kernel
# build of an hour is not repeated for a benchmark):
#
#   BENCH_FROM_STORE=DIR       push this store instead of building cold; it is only read (the
#                              push writes its temporary archives and upload sessions under
#                              DIR/v1 and removes them)
#   BENCH_COLD_SECONDS=N       the wall time of that cold build, printed as the cold side
#   BENCH_REFERENCE=DIR        the cold build's output directory: its images (SHA256SUMS) are
#                              compared with the warm build's
#   BENCH_WORK=DIR             where the registry's storage and the stores go (default: a
#                              temporary directory); removed at the end unless BENCH_KEEP=1
#
# Needs Debian's docker-registry (scripts/setup.sh --tests), run here on a free port of
# 127.0.0.1 with its storage in a temporary directory, and root or subordinate ids for the
# sandbox. pins.lock must be current (`hermetic lock`).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-base}
command -v docker-registry >/dev/null || { echo "docker-registry is missing: bash scripts/setup.sh --tests" >&2; exit 1; }
# HERMETIC_BIN: a hermetic binary to time instead of a fresh release build.
if [ -z "${HERMETIC_BIN:-}" ]; then cargo build --release -q; fi
bin=${HERMETIC_BIN:-$PWD/target/release/hermetic}
from_store=${BENCH_FROM_STORE:-}
if [ -n "$from_store" ] && [ -z "${BENCH_COLD_SECONDS:-}" ]; then
  echo "BENCH_FROM_STORE needs BENCH_COLD_SECONDS (the wall time of the build that filled it)" >&2
  exit 1
fi
if [ -n "${BENCH_WORK:-}" ]; then
  work=$BENCH_WORK
  mkdir -p "$work"
else
  work=$(mktemp -d)
fi
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
cache=127.0.0.1:$port/bench

# (kept in a BENCH_WORK of an earlier run, whose registry storage holds what it signed)
[ -f "$work/bench.key" ] || "$bin" sign --generate-key "$work/bench.key" >/dev/null

now() { date +%s.%N; }
# Bytes of a directory tree.
size() { du -sb "$1" 2>/dev/null | cut -f1; }

if [ -n "$from_store" ]; then
  # Cold: measured elsewhere, into the store given.
  store=$from_store
  reference=${BENCH_REFERENCE:-}
  cold=$BENCH_COLD_SECONDS
  cold_what="(cold, measured before)"
  mirror="-"
  t1=$(now)
else
  # Cold: an empty store, everything from the mirror and every step run.
  store=$work/cold
  reference=$work/out-cold
  cold_what="(cold, empty store)"
  t0=$(now)
  "$bin" --store "$store" build "$target" --no-cache --output "$reference" >"$work/cold.log" 2>&1
  t1=$(now)
  cold=$(echo "$t1 - $t0" | bc)
  mirror=$(size "$store/v1/blobs")
fi

"$bin" --store "$store" --json cache push "$cache" --key "$work/bench.key" >"$work/push.json" 2>"$work/push.log"
t2=$(now)
pushed=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["blob_bytes"] + r["step_bytes"], r["blobs_pushed"], r["steps_pushed"])' "$work/push.json")

# Warm cache: another machine (a fresh clone, another empty store), pins and step outputs from
# the registry.
rm -rf "$work/clone" "$work/warm" "$work/out-warm"
git clone -q "$PWD" "$work/clone"
t3=$(now)
"$bin" -C "$work/clone" --store "$work/warm" build "$target" --cache "$cache" \
  --cache-key "$work/bench.key.pub" --output "$work/out-warm" >"$work/warm.log" 2>&1
t4=$(now)
pulled=$(grep -o 'cache: pulled.*' "$work/warm.log" || echo "cache: (no figures)")
ran=$({ grep -E '^  running  ' "$work/warm.log" || true; } | awk '{print $2}' | tr '\n' ' ')

awk -v cold="$cold" -v push="$(echo "$t2 - $t1" | bc)" \
    -v warm="$(echo "$t4 - $t3" | bc)" -v mirror="$mirror" -v pushed="$pushed" \
    -v target="$target" -v cold_what="$cold_what" 'BEGIN {
  split(pushed, p, " ")
  if (mirror == "-") m = "(see its log)"; else m = sprintf("%.1f MiB from the mirror", mirror / 1048576)
  printf "%-52s %9.1f s   %s\n", "hermetic build " target " " cold_what, cold, m
  printf "%-52s %9.1f s   %.1f MiB to the registry (%d pinned files, %d step outputs)\n", "hermetic cache push", push, p[1] / 1048576, p[2], p[3]
  printf "%-52s %9.1f s\n", "hermetic build " target " (warm cache, empty store)", warm
  if (warm > 0) printf "speed-up of the warm-cache build: %.1fx\n", cold / warm
}'
echo "$pulled"
echo "steps run by the warm-cache build: ${ran:-none}"
case " $ran " in *"/kernel "*) echo "a kernel step RAN" ;; *) echo "no kernel step ran" ;; esac
# The images of both builds, by SHA-256.
if [ -n "$reference" ] && [ -f "$reference/SHA256SUMS" ]; then
  grep -E '\.(efi|tar\.gz|tar|vhd|qcow2|raw)$' "$reference/SHA256SUMS" | while read -r sum name; do
    warm_sum=$(sha256sum "$work/out-warm/$name" 2>/dev/null | cut -d' ' -f1)
    if [ "$sum" = "$warm_sum" ]; then echo "identical  $sum  $name"; else echo "DIFFERENT  $name: cold $sum, warm ${warm_sum:-missing}"; fi
  done
fi
