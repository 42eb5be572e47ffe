#!/usr/bin/env bash
# Builds the cargo-fuzz targets under fuzz/ and runs each for SECONDS (default 600) in one
# libFuzzer process, then prints per target: executions, executions per second, crashes and
# the corpus size before and after. Not part of CI (it needs nightly and cargo-fuzz):
#   rustup toolchain install nightly && cargo install cargo-fuzz
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Corpora (fuzz/corpus/TARGET) and crash inputs (fuzz/artifacts/TARGET) stay out of git;
# fuzz/seeds/TARGET holds the few small seed inputs that are committed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
# The fuzz crate has its own target directory (fuzz/target), whatever the caller's is.
unset CARGO_TARGET_DIR
# No sanitizer (hermetic has no unsafe code; the C libraries it links are not instrumented
# anyway), but debug assertions and overflow checks on: an overflow in a parser is a finding.
flags=(--sanitizer none --debug-assertions)
cargo +nightly fuzz build "${flags[@]}"

count() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }
summary=()
for t in "${targets[@]}"; do
  corpus="corpus/$t"
  artifacts="artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  before=$(count "$corpus")
  crashes_before=$(count "$artifacts")
  log="$(mktemp)"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  echo "fuzz.sh: $t for ${secs}s"
  # -fork is not used: one process, one core. libFuzzer stops at the first crash.
  set +e
  cargo +nightly fuzz run "${flags[@]}" "$t" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout=30 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1
  rc=$?
  set -e
  tail -n 40 "$log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  after=$(count "$corpus")
  crashes=$(( $(count "$artifacts") - crashes_before ))
  line="$t: executions ${execs:-?}, exec/s ${rate:-?}, crashes $crashes (exit $rc), corpus $before -> $after"
  echo "fuzz.sh: $line"
  summary+=("$line")
  rm -f "$log"
done
echo "fuzz.sh: summary (${secs}s per target)"
printf '  %s\n' "${summary[@]}"
