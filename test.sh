#!/usr/bin/env bash
# threadbook: run every test (sets up first; see ./run.sh).
#
#   ./test.sh          Rust unit and protocol tests, then the Jupyter end-to-end suites
#   ./test.sh -k NAME  extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")"
./run.sh setup

# Debian packages the end-to-end tests need beyond the course's.
TEST_DEBS=(chromium tmux nodejs)
THREADBOOK_SOURCED=1 source ./run.sh
[ ${#TEST_DEBS[@]} -eq 0 ] || need_debs "${TEST_DEBS[@]}"
# npm packages of the client tests (JupyterHub's proxy), pinned by tests/clients/package-lock.json.
command -v npm >/dev/null || need_debs npm
[ tests/clients/node_modules/.package-lock.json -nt tests/clients/package-lock.json ] ||
    (cd tests/clients && npm ci --no-audit --no-fund)

printf '\n== Rust tests (kernel units, protocol against the mock engine, toolkit)\n'
cargo test --release --locked --workspace

printf '\n== Jupyter end-to-end tests (real clients, real kernel, the course)\n'
.venv/bin/python -m pytest tests -q -rs "$@"
