#!/usr/bin/env bash
# The two commands of the README, for a fresh Debian machine with Python 3.11:
#   bash run.sh demo   set up and start the demonstrator on the shipped Bergwald scenario (offline)
#   bash run.sh test   set up (Python packages, Debian's Chromium for the browser tests) and run all tests
# Set PYTHON to choose the interpreter (default python3, must be >= 3.11).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv

apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}

setup() {  # $1: pip extra ("" or "test")
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "run.sh: needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; apt_install python3-venv; "$PY" -m venv "$VENV"; }
    fi
    local target="." stamp
    [ -n "$1" ] && target=".[$1]"
    stamp="$VENV/.installed-$(cat pyproject.toml | sha256sum | cut -c1-12)-${1:-base}"
    if [ ! -f "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e "$target"
        touch "$stamp"
    fi
}

case "${1:-}" in
    demo)
        setup ""
        exec "$VENV/bin/python" -m app "${@:2}"
        ;;
    test)
        setup test
        if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
            apt_install chromium chromium-driver
        fi
        export DASH_TEST_CHROMEPATH=${DASH_TEST_CHROMEPATH:-$(command -v chromium)}
        exec "$VENV/bin/python" -m pytest -q "${@:2}"
        ;;
    *)
        echo "usage: bash run.sh demo | test [pytest args]" >&2
        exit 2
        ;;
esac
