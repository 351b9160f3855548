#!/usr/bin/env bash
# The two commands of the README, for a fresh Debian machine with Python 3.11:
#   bash run.sh demo   set up and start the demonstrator on the shipped Bergwald scenario (offline)
#   bash run.sh test   set up (pinned Python packages, Debian's Chromium and Redis) and run all tests
# Set PYTHON to choose the interpreter (default python3, must be >= 3.11).
# Python packages come from requirements.lock (pinned; refresh it with the command in its header).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv

apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ -z "${_APT_UPDATED:-}" ]; then $sudo apt-get update -qq; _APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

setup() {
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "run.sh: needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; apt_install python3-venv; "$PY" -m venv "$VENV"; }
    fi
    local stamp
    stamp="$VENV/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)"
    if [ ! -f "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -r requirements.lock
        "$VENV/bin/python" -m pip install -q --no-deps -e .
        rm -f "$VENV"/.installed-*
        touch "$stamp"
    fi
}

start_redis() {  # a private Redis on a free loopback port for the Celery tests; stopped on exit
    command -v redis-server >/dev/null || apt_install redis-server
    local port
    port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    REDIS_DIR=$(mktemp -d)
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$REDIS_DIR" --daemonize no \
        >"$REDIS_DIR/redis.log" 2>&1 &
    REDIS_PID=$!
    trap 'kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; rm -rf "$REDIS_DIR"' EXIT
    for _ in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$port" ping >/dev/null || { echo "run.sh: redis-server did not start (see $REDIS_DIR/redis.log)" >&2; exit 1; }
    export DIGIPLAT_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
}

case "${1:-}" in
    demo)
        setup
        exec "$VENV/bin/python" -m app "${@:2}"
        ;;
    test)
        setup
        if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
            apt_install chromium chromium-driver
        fi
        export DASH_TEST_CHROMEPATH=${DASH_TEST_CHROMEPATH:-$(command -v chromium)}
        start_redis
        "$VENV/bin/python" -m pytest -q "${@:2}"
        ;;
    *)
        echo "usage: bash run.sh demo | test [pytest args]" >&2
        exit 2
        ;;
esac
