"""``digiplat serve``: serve the Dash demonstrator with gunicorn (same as ``python -m app``).

Without ``$REDIS_URL`` a market round runs inside the gunicorn worker that got the click
(``--workers`` of them, forked warm from one master); with ``$REDIS_URL`` rounds are Dash
background callbacks on Celery workers (``--celery-workers``, started and stopped with the
server) and a Redis broker. ``--grid DIR`` serves another grid folder written by ``digiplat grid
build --out DIR`` instead of the shipped Bergwald grid. Bad input (a port outside 1-65535, a port
in use, a host that does not resolve or is not this machine's, an unreachable Redis, a --grid
folder that is not a complete grid) is one line on stderr and exit 2, checked before gunicorn
starts its workers.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
from typing import Any

MAX_WORKERS = 32


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (use 1-65535)") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is outside 1-65535")
    return port


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers") from None
    if not 1 <= n <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{n} is outside 1-{MAX_WORKERS}")
    return n


def default_workers() -> int:
    """Return the default worker count: one per CPU this process may use (rounds are CPU-bound)."""
    try:
        return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))
    except AttributeError:  # not Linux
        return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="serve the web demonstrator (gunicorn; Celery workers with $REDIS_URL)",
        description="Serve the demonstrator with gunicorn. Without $REDIS_URL each worker runs the market "
                    "rounds of its requests; with $REDIS_URL=redis://HOST:PORT/DB the rounds run on Celery "
                    "workers that serve starts and stops.")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8050, help="port, 1-65535 (default 8050)")
    serve.add_argument("--workers", type=_workers, default=None,
                       help=f"gunicorn worker processes, 1-{MAX_WORKERS} (default: one per CPU)")
    serve.add_argument("--celery-workers", type=_workers, default=None,
                       help="with $REDIS_URL: Celery pool size (default: --workers)")
    serve.add_argument("--debug", action="store_true", help="Flask's development server with Dash dev tools (one process)")
    serve.add_argument("--grid", metavar="DIR",
                       help="serve this grid folder (written by 'digiplat grid build --out DIR'; default: Bergwald)")
    serve.set_defaults(func=run)


def check_bind(host: str, port: int) -> None:
    """Raise ``InputError`` unless ``host:port`` can be listened on now."""
    from optim._errors import InputError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        raise InputError(f"host {host!r} does not resolve: use an address of this machine, e.g. 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(f"port {port} on {host} is in use: stop that server or choose another --port") from None
            if exc.errno == errno.EACCES:
                raise InputError(f"no permission to listen on port {port}: use a port above 1023") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InputError(f"host {host!r} is not an address of this machine: use e.g. 127.0.0.1 or 0.0.0.0") from None
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror})") from None


def check_redis(url: str) -> None:
    """Raise ``InputError`` unless the Redis at ``url`` answers a PING within 3 s."""
    import redis

    from optim._errors import InputError

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
        client.close()
    except ValueError as exc:
        raise InputError(f"REDIS_URL is not a Redis URL ({exc}): use redis://HOST:PORT/DB") from None
    except redis.RedisError as exc:
        raise InputError(f"Redis at REDIS_URL does not answer ({type(exc).__name__}): start redis-server or unset REDIS_URL") from None


def checked_grid_dir(text: str) -> str:
    """Return ``--grid``'s folder, resolved, if it holds a complete grid, else raise a one-line error.

    The grid is loaded here, in the process gunicorn forks from, so a bad folder stops the start
    before any worker exists (the workers then load it again from the checked folder).
    """
    from pathlib import Path

    from gridgen.grid import Grid
    from optim._errors import InputError

    path = Path(text)
    if not path.exists():
        raise InputError(f"--grid {text} does not exist; give a folder written by 'digiplat grid build --out DIR'")
    if not path.is_dir():
        raise InputError(f"--grid {text} is a file, not a grid folder; give a folder written by "
                         "'digiplat grid build --out DIR'")
    grid = Grid.load(path)  # InputDataError (one line) if a file is missing or unreadable
    if not grid.geojson.get("features"):
        raise InputError(f"--grid {text} has no map features in map.geojson; rebuild it with "
                         f"'digiplat grid build --out {text}'")
    return str(path.resolve())


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.grid:
        from app.session import GRID_ENV

        # the environment carries the folder to gunicorn's workers and to the Celery worker process
        os.environ[GRID_ENV] = checked_grid_dir(args.grid)
    check_bind(args.host, args.port)
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        check_redis(redis_url)
    # One BLAS thread per process: the workers already use every core.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from app import session
    from app.server import serve

    session.cache_dir()  # a cache directory of another user is refused before anything loads
    serve(host=args.host, port=args.port, workers=args.workers or default_workers(),
          celery_workers=args.celery_workers, debug=args.debug)
    return None
