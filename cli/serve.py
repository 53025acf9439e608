"""``gidx serve``: the HTTP JSON API and browser page over one index (:mod:`gidx.serve`).

Hooked into the main app by ``register(app)``. Only typer and the standard library
at import time: FastAPI and uvicorn are imported when the command runs.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from .options import DEFAULT_INDEX, IndexOpt


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def serve_cmd(
    index: IndexOpt = DEFAULT_INDEX,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything but a loopback address "
                                                     "(127.0.0.1, ::1, localhost) needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0: any free port).")] = 8000,
    token: Annotated[
        Optional[str],
        typer.Option("--token", envvar="GIDX_TOKEN", show_envvar=True,
                     help="Require 'Authorization: Bearer TOKEN' on every data route (the page asks for it). "
                          "Prefer the environment variable: a command line is visible to other users."),
    ] = None,
    max_upload: Annotated[str, typer.Option("--max-upload", help="Largest request body: bytes or 512K, 50M, 1G.")] = "50M",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No access log (warnings and errors only).")] = False,
    workers: Annotated[
        int, typer.Option("--workers", "-w", help="Server processes sharing the port, each with its own warm index "
                                                  "(Python runs one thread at a time per process: use about one "
                                                  "per core).")
    ] = 1,
) -> None:
    """Serve the index over HTTP: JSON API (POST /query, /records, /queries/ID, /sql, /health; docs at /docs)
    and a page to search it from a browser."""
    from gidx.errors import GidxError
    from gidx.serve import is_loopback, parse_size

    if token is not None and not token.strip():
        raise GidxError("--token is empty")
    limit = parse_size(max_upload)
    if not (0 <= port <= 65535):
        raise GidxError(f"--port {port}: expected 0 to 65535")
    if not token and not is_loopback(host):
        raise GidxError(f"--host {host} is not a loopback address: other machines could read and query the "
                        "index; give --token (or $GIDX_TOKEN) to require a token, or listen on 127.0.0.1")
    import uvicorn

    from gidx.serve import create_app

    from .options import open_index

    if workers < 1:
        raise GidxError(f"--workers {workers}: expected at least 1")
    open_index(index)  # a missing or foreign folder fails here, with the usual message
    sock = _listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    _err(f"gidx serve: http://{shown}:{bound_port}/ (index {index}; API docs at /docs"
         f"{'; token required' if token else ''}"
         f"{f'; {workers} worker processes' if workers > 1 else ''}; Ctrl-C stops)")

    def run() -> None:
        app = create_app(index, token=token, max_upload=limit, allowed_hosts=(host,))
        config = uvicorn.Config(app, log_level="warning" if quiet else "info", access_log=not quiet,
                                timeout_graceful_shutdown=10, server_header=False)
        uvicorn.Server(config).run(sockets=[sock])

    try:
        if workers == 1:
            run()
        else:
            _prefork(run, workers)
    finally:
        sock.close()


def _prefork(run, workers: int) -> None:
    """``workers`` child processes, forked before any index is opened, each serving the
    one listening socket (the kernel hands each connection to one of them); this process
    only passes SIGINT/SIGTERM on and waits. Each child stores its queries through its own
    background committer: DuckDB's lock serialises their short write transactions."""
    import os
    import signal

    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run()
            except BaseException:  # noqa: BLE001 - a child reports and exits, never returns to the CLI
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum, _frame):
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for child in children:
        while True:
            try:
                os.waitpid(child, 0)
                break
            except InterruptedError:
                continue


def _listen(host: str, port: int):
    """The listening socket, bound here so that a busy port is one clear error (and port 0 works)."""
    import socket

    from gidx.errors import GidxError

    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as e:
        raise GidxError(f"--host {host}: {e.strerror or e}") from None
    family, stype, proto, _, addr = infos[0]
    sock = socket.socket(family, stype, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise GidxError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.set_inheritable(True)
    return sock


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
