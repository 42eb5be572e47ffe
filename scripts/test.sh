#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (live tests included:
# they read the Debian mirror from the host's apt configuration).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --workspace
