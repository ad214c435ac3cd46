#!/usr/bin/env bash
# threadbook: run every test (sets up first; see ./run.sh).
#
#   ./test.sh          Rust unit and protocol tests, then the Jupyter end-to-end suites
#   ./test.sh -k NAME  extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")"
./run.sh setup

# Debian packages the end-to-end tests need beyond the course's.
TEST_DEBS=()
THREADBOOK_SOURCED=1 source ./run.sh
[ ${#TEST_DEBS[@]} -eq 0 ] || need_debs "${TEST_DEBS[@]}"

printf '\n== Rust tests (kernel units, protocol against the mock engine, toolkit)\n'
cargo test --release --locked --workspace

printf '\n== Jupyter end-to-end tests (real clients, real kernel, the course)\n'
.venv/bin/python -m pytest tests -q -rs "$@"
