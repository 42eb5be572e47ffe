#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (live tests included:
# they read the Debian mirror from the host's apt configuration).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# --no-fail-fast: one failing suite must not hide the others.
cargo test --locked --workspace --no-fail-fast
# render-config, the BuilderNet image's boot-time renderer: its own workspace and lock.
cargo fmt --manifest-path programs/render-config/Cargo.toml -- --check
cargo clippy --locked --manifest-path programs/render-config/Cargo.toml --all-targets -- -D warnings
cargo test --locked --manifest-path programs/render-config/Cargo.toml

# Run as root, the workspace tests above include tests/operator_live.rs, the non-root operator
# path: it creates its own fresh users (no subordinate ids), follows `hermetic doctor`'s fix,
# builds `base` as such a user and removes them again; as an ordinary user it is skipped.
if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: not root, so operator_live (a fresh user follows doctor's advice and builds base) was skipped" >&2
fi

# The sandbox suites once more as an ordinary user: the escape and environment suites must
# pass for root and for a user without privileges (setup.sh creates hermetic-ci, with
# subordinate ids). Needs the target directory to be readable by that user.
if [ "$(id -u)" -eq 0 ] && id -u hermetic-ci >/dev/null 2>&1; then
  for suite in sandbox_escape sandbox_env sandbox_doctor; do
    # The test binary of this suite, not the hermetic binary cargo may list after it.
    bin="$(cargo test --locked --test "$suite" --no-run --message-format=json 2>/dev/null \
      | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    t = m.get("target") or {}
    if m.get("reason") == "compiler-artifact" and t.get("name") == sys.argv[1] \
            and "test" in t.get("kind", []) and m.get("executable"):
        print(m["executable"])' "$suite" | tail -n 1)"
    if [ -z "$bin" ]; then
      echo "test.sh: cargo named no test binary for $suite" >&2
      exit 1
    fi
    if ! runuser -u hermetic-ci -- test -x "$bin"; then
      echo "test.sh: hermetic-ci cannot run $bin; put the target directory where it can (CARGO_TARGET_DIR)" >&2
      exit 1
    fi
    echo "test.sh: $suite as hermetic-ci"
    (cd /tmp && runuser -u hermetic-ci -- env HOME=/tmp "$bin")
  done
fi
