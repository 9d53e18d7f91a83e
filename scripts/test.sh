#!/usr/bin/env bash
# The whole test suite, as the README gives it: installs what is missing, starts every
# service the tests need, then runs formatting, lint and all tests (integration ones included).
set -euo pipefail
cd "$(dirname "$0")/.."

export OSPREY_SHARED="${OSPREY_SHARED:-$(cd .. && pwd)/shared}"
bash scripts/deps.sh
. scripts/services.sh

cargo fmt --all -- --check
cargo clippy --locked --all-targets --features integration-tests -- -D warnings
cargo bench --locked --profile dev --no-run
cargo test --locked --features integration-tests
