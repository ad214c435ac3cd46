#!/usr/bin/env bash
# threadbook: set everything up, then run the course and export it to HTML.
#
#   ./run.sh           set up (build, Python env, kernelspec) and export the course
#   ./run.sh setup     set up only
#   ./run.sh export    export only (needs a set-up machine)
#
# Needs: the Rust toolchain (cargo), Python 3 with pip, and Debian's apt-get
# for the few system packages listed below (installed only when missing).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
say() { printf '\n== %s\n' "$*"; }

# Debian packages the course uses (strace shows how a child process starts).
COURSE_DEBS=(strace)

# Installs the Debian packages given that are missing (with sudo when not root).
need_debs() {
    local missing=() p
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "Installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

python_env() {
    if [ ! -x "$VENV/bin/python" ]; then
        say "Creating the Python environment in .venv"
        if ! python3 -m venv "$VENV" 2>/dev/null; then
            echo "python3 -m venv failed; installing python3-venv with apt-get"
            rm -rf "$VENV"
            need_debs python3-venv
            python3 -m venv "$VENV"
        fi
    fi
    say "Installing Jupyter and test clients into .venv"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r requirements.txt
}

setup() {
    need_debs "${COURSE_DEBS[@]}"
    # The Python environment mostly downloads: it is made while the kernel compiles.
    python_env > "$ROOT/.venv-setup.log" 2>&1 &
    local python_job=$!
    say "Building the threadbook kernel (release; the first build takes ~6 minutes on 2 cores)"
    cargo build --release --locked -p threadbook

    if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
        say "Adding rust-src (code completion in cells needs it)"
        rustup component add rust-src || echo "rust-src unavailable: completion will know less about std"
    fi

    if ! wait "$python_job"; then
        cat "$ROOT/.venv-setup.log" >&2
        echo "setting up the Python environment failed (log above)" >&2
        exit 1
    fi
    cat "$ROOT/.venv-setup.log"

    say "Installing the kernelspec"
    "$ROOT/target/release/threadbook" install --user
    PATH="$VENV/bin:$PATH" jupyter kernelspec list

    say "Warming the build cache with the course's dependencies (a minute or two the first time)"
    "$VENV/bin/python" notebooks/export.py --warm
}

export_course() {
    say "Running every notebook with the threadbook kernel and exporting HTML"
    "$VENV/bin/python" notebooks/export.py --out build/html
    "$VENV/bin/python" notebooks/export.py --out build/student --student --reuse build/html
    say "Done. Open build/html/index.html, or start JupyterLab with: .venv/bin/jupyter lab notebooks/"
}

# ./test.sh sources this file for its helpers only.
[ "${THREADBOOK_SOURCED:-}" = 1 ] && return 0

case "${1:-all}" in
    setup) setup ;;
    export) export_course ;;
    all) setup; export_course ;;
    *) echo "usage: ./run.sh [setup|export]" >&2; exit 2 ;;
esac
