#!/bin/sh
# Benchmark of a `[[cargo]]` build (not run in CI): ripgrep 14.1.1 from its crates.io
# `.crate`, built by `hermetic build` in the sandbox from vendored crates with Debian's
# rustc/cargo 1.85 (cold, into an empty store), next to a plain `cargo build --locked
# --release --bin rg` of the same unpacked source on the host with the host's cargo (its
# crates fetched first with `cargo fetch --locked`, timed apart). Prints the figures side
# by side and the SHA-256 of both binaries (they differ: another compiler, other paths).
#
# Usage: scripts/bench-cargo.sh [WORKDIR]   (default: a new directory under /var/tmp)
#   HERMETIC=PATH  use this hermetic binary instead of building a release one
# Needs: cargo, python3, curl, about 3 GB of disk in WORKDIR, the Debian mirror of the host's
# apt configuration, static.crates.io.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /var/tmp/hermetic-bench-cargo.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
echo "bench-cargo: work directory $work"

for tool in cargo python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench-cargo: $tool is missing" >&2; exit 1; }
done

if [ -n "${HERMETIC:-}" ]; then
  hermetic=$HERMETIC
else
  cargo build --release --manifest-path "$repo/Cargo.toml" --bin hermetic
  hermetic="${CARGO_TARGET_DIR:-$repo/target}/release/hermetic"
fi

project="$work/project"
store="$work/store"
mkdir -p "$project/recipes"
cp "$repo/hermetic.toml" "$project/"
cp -r "$repo/keys" "$project/"
cat > "$project/recipes/rg.toml" <<'EOF'
format = "tar"
packages = ["base-files"]

[[sources]]
kind = "file"
name = "ripgrep"
urls = ["https://static.crates.io/crates/ripgrep/ripgrep-14.1.1.crate"]

[[cargo]]
name = "rg"
source = "ripgrep"
bins = ["rg"]
install = { "rg" = "/usr/bin/rg" }
EOF
h() { "$hermetic" -C "$project" --store "$store" "$@"; }
h lock --allow-mirror-state
h fetch

now() { python3 -c 'import time; print(time.monotonic())'; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

# 1. hermetic: every step cold; the cargo step's own time from the JSON report.
if [ -s "$work/build.json" ] && [ -s "$work/build-seconds" ]; then
  # A rerun in the same WORKDIR (e.g. after the host part failed) keeps the measured build.
  echo "bench-cargo: reusing the cold build measured earlier in $work"
else
  start=$(now)
  h --json build rg --output "$work/out" > "$work/build.json"
  since "$start" > "$work/build-seconds"
fi
hermetic_total=$(cat "$work/build-seconds")
step() {
  python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
print(next("%.1f" % s["seconds"] for s in r["steps"] if s["name"] == sys.argv[2]))' \
    "$work/build.json" "$1"
}
cargo_step=$(step rg/cargo-rg)
tools_step=$(step rg/cargo-tools)
tar -xOf "$work/out/rg.tar" ./usr/bin/rg > "$work/rg-hermetic"

# 2. The host: the same source, the host's cargo, the host's CARGO_HOME.
# Outside any cargo workspace (WORKDIR may lie inside this repository).
host=$(mktemp -d /var/tmp/hermetic-bench-cargo-host.XXXXXX)
curl -sSfL -o "$host/ripgrep.crate" \
  https://static.crates.io/crates/ripgrep/ripgrep-14.1.1.crate
tar -xzf "$host/ripgrep.crate" -C "$host"
src="$host/ripgrep-14.1.1"
start=$(now)
(cd "$src" && cargo fetch --locked)
host_fetch=$(since "$start")
start=$(now)
(cd "$src" && CARGO_TARGET_DIR="$host/target" cargo build --locked --offline --release --bin rg)
host_build=$(since "$start")

printf '\n%-52s %10s\n' "what" "seconds"
printf '%-52s %10s\n' "hermetic build rg, cold (all steps)" "$hermetic_total"
printf '%-52s %10s\n' "  of which the toolchain tree (rg/cargo-tools)" "$tools_step"
printf '%-52s %10s\n' "  of which cargo build, vendored, sandbox (rg/cargo-rg)" "$cargo_step"
printf '%-52s %10s\n' "host: cargo fetch --locked" "$host_fetch"
printf '%-52s %10s\n' "host: cargo build --locked --release ($(cargo --version | cut -d' ' -f2))" "$host_build"
printf '\nrg (hermetic, rustc 1.85 from Debian): %s\n' "$(sha256sum < "$work/rg-hermetic" | cut -d' ' -f1)"
printf 'rg (host):                              %s\n' "$(sha256sum < "$host/target/release/rg" | cut -d' ' -f1)"
echo "bench-cargo: remove $work and $host when done (a store of about 2 GB, a target of about 1 GB)"
