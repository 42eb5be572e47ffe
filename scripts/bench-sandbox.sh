#!/usr/bin/env bash
# Benchmark: start and finish `true` in hermetic's sandbox, side by side with bubblewrap and
# unshare(1) doing comparable work, and print hermetic's ratio against bwrap.
#
#   scripts/bench-sandbox.sh [RUNS]        (default 100; builds hermetic in release first)
#
# The three commands:
#   hermetic  hermetic sandbox run -- true    (user, mount, pid, net, uts, ipc, cgroup ns;
#             read-only /usr, /dev, /proc, tmpfs /tmp, pivot_root, caps, landlock, seccomp)
#   bwrap     bwrap --unshare-all with the same view of /usr, /dev, /proc, /tmp
#   unshare   unshare -Urmnpf --mount-proc true (namespaces and /proc only: a lower bound)
# Uses hyperfine when installed (apt-get install hyperfine), else a loop timed with date.
# With valgrind installed, also the instructions each caller process executes (callgrind;
# the sandbox's own child processes not counted), which, unlike wall times, a busy machine
# does not disturb.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-100}"
cargo build --release --quiet --bin hermetic
hermetic="${CARGO_TARGET_DIR:-target}/release/hermetic"

links=()
for l in bin sbin lib lib64; do
  if [ -L "/$l" ]; then links+=(--symlink "$(readlink "/$l")" "/$l"); fi
done
bwrap_cmd="bwrap --unshare-all --die-with-parent --ro-bind /usr /usr ${links[*]} --dev /dev --proc /proc --tmpfs /tmp --hostname hermetic --clearenv true"
hermetic_cmd="$hermetic sandbox run -- true"
unshare_cmd="unshare -Urmnpf --mount-proc true"

for cmd in "$hermetic_cmd" "$bwrap_cmd" "$unshare_cmd"; do
  $cmd || { echo "bench-sandbox: '$cmd' does not run on this machine" >&2; exit 1; }
done

if command -v valgrind >/dev/null 2>&1; then
  cg="$(mktemp -d)"
  instructions() { # command...
    valgrind --tool=callgrind --child-silent-after-fork=yes --callgrind-out-file="$cg/out.%p" "$@" \
      2>&1 >/dev/null | awk '/refs:/ { gsub(",", "", $NF); print $NF }'
  }
  # shellcheck disable=SC2086
  hi=$(instructions $hermetic_cmd); bi=$(instructions $bwrap_cmd)
  # shellcheck disable=SC2086
  hvi=$(instructions $hermetic --version); bvi=$(instructions bwrap --version)
  rm -rf "$cg"
  echo "instructions of the caller (callgrind): hermetic $hi, bwrap $bi (ratio $(awk -v h="$hi" -v b="$bi" 'BEGIN { printf "%.2f", h / b }')); --version: hermetic $hvi, bwrap $bvi"
fi

if command -v hyperfine >/dev/null 2>&1; then
  json="$(mktemp)"
  trap 'rm -f "$json"' EXIT
  # `--version` of both binaries: what merely starting each program costs (hermetic is a
  # much larger binary), to tell the sandbox's cost from the program's.
  hyperfine --warmup 5 --runs "$runs" -N --export-json "$json" \
    -n hermetic "$hermetic_cmd" -n bwrap "$bwrap_cmd" -n unshare "$unshare_cmd" \
    -n hermetic-version "$hermetic --version" -n bwrap-version "bwrap --version"
  python3 - "$json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
for stat in ("mean", "median", "min"):
    h, b, u, hv, bv = (r[n][stat] * 1e3 for n in ("hermetic", "bwrap", "unshare", "hermetic-version", "bwrap-version"))
    print(f"hermetic/bwrap {stat} ratio: {h / b:.2f} (hermetic {h:.2f} ms, bwrap {b:.2f} ms, unshare {u:.2f} ms); "
          f"without program start-up ({hv:.2f} vs {bv:.2f} ms): {(h - hv) / (b - bv):.2f}")
EOF
else
  mean_ms() { # command...
    local start end
    start=$(date +%s%N)
    for _ in $(seq "$runs"); do "$@" >/dev/null; done
    end=$(date +%s%N)
    echo $(( (end - start) / runs / 1000 ))
  }
  # shellcheck disable=SC2086
  h=$(mean_ms $hermetic_cmd); b=$(mean_ms $bwrap_cmd); u=$(mean_ms $unshare_cmd)
  echo "mean over $runs runs: hermetic ${h} us, bwrap ${b} us, unshare ${u} us"
  awk -v h="$h" -v b="$b" 'BEGIN { printf "hermetic/bwrap mean ratio: %.2f\n", h / b }'
fi
