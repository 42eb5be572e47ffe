#!/usr/bin/env bash
# Benchmark (not a test): `hermetic fetch` of the pinned base closure into an empty store
# (cold) and again (warm), next to `apt-get download` of the same package versions through a
# temporary apt configuration using the same mirror (read from this host's apt configuration).
#
# Usage: scripts/bench-fetch.sh [PROJECT_DIR]   (default: the repository)
set -euo pipefail
cd "$(dirname "$0")/.."
project=${1:-.}
target=${CARGO_TARGET_DIR:-target}

cargo build --quiet --bin hermetic
hermetic="$target/debug/hermetic"
[ -f "$project/pins.lock" ] || { echo "no $project/pins.lock; run hermetic lock first" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# hermetic, cold then warm.
t0=$(now)
cold_json=$("$hermetic" -C "$project" --store "$work/store" --json fetch)
t1=$(now)
warm_json=$("$hermetic" -C "$project" --store "$work/store" --json fetch)
t2=$(now)
files=$(echo "$cold_json" | sed -n 's/.*"fetched":\([0-9]*\).*/\1/p')
bytes=$(echo "$cold_json" | sed -n 's/.*"bytes":\([0-9]*\).*/\1/p')
warm_requests=$(echo "$warm_json" | sed -n 's/.*"requests":\([0-9]*\).*/\1/p')

# The Debian mirror of this host's apt configuration (never written down anywhere).
mirror=$(grep -rhoE '(URIs:|^deb)[^#]*https?://[^ ]*/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
  | grep -oE 'https?://[^ ]*/debian/?' | head -n1 | sed 's:/*$::' || true)
if [ -z "$mirror" ]; then
  echo "no Debian mirror in this host's apt configuration; skipping apt-get download" >&2
  apt_update="-" apt_download="-"
else
  # A throwaway apt configuration for trixie, checked with the repository's keyring.
  keyring=$(realpath "$project/keys/debian-archive-keyring.pgp")
  mkdir -p "$work/apt/etc/sources.list.d" "$work/apt/state/lists/partial" \
    "$work/apt/cache/archives/partial" "$work/dl"
  cat >"$work/apt/etc/sources.list" <<EOF
deb [signed-by=$keyring] $mirror trixie main
deb [signed-by=$keyring] $mirror-security trixie-security main
EOF
  cat >"$work/apt/apt.conf" <<EOF
Dir::Etc::sourcelist "$work/apt/etc/sources.list";
Dir::Etc::sourceparts "$work/apt/etc/sources.list.d";
Dir::State "$work/apt/state";
Dir::State::status "/dev/null";
Dir::Cache "$work/apt/cache";
APT::Architecture "amd64";
Acquire::Languages "none";
APT::Sandbox::User "$(id -un)";
EOF
  export APT_CONFIG="$work/apt/apt.conf"
  t3=$(now)
  apt-get -qq update >/dev/null
  t4=$(now)
  # name=version of every pinned package.
  mapfile -t wanted < <(awk -F'"' '/^\[\[package\]\]/{p=1} p&&/^name = /{n=$2} p&&/^version = /{print n"="$2; p=0}' "$project/pins.lock")
  (cd "$work/dl" && apt-get -qq download "${wanted[@]}" >/dev/null)
  t5=$(now)
  apt_update=$(elapsed "$t3" "$t4")
  apt_download=$(elapsed "$t4" "$t5")
  apt_files=$(find "$work/dl" -name '*.deb' | wc -l)
fi

printf '%-44s %8s\n' "" "seconds"
printf '%-44s %8s   (%s files, %s MiB)\n' "hermetic fetch, cold (empty store)" "$(elapsed "$t0" "$t1")" "$files" "$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')"
printf '%-44s %8s   (%s HTTP requests)\n' "hermetic fetch, warm (all pins present)" "$(elapsed "$t1" "$t2")" "$warm_requests"
printf '%-44s %8s\n' "apt-get update (temporary config, trixie)" "$apt_update"
printf '%-44s %8s   (%s files)\n' "apt-get download of the same versions" "$apt_download" "${apt_files:--}"
