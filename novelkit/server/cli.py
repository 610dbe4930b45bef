"""``novelkit serve`` and ``novelkit keys create``: argument definitions and the commands.

novelkit/cli.py wires them in::

    serve = sub.add_parser("serve", help="run the HTTP/WebSocket sidecar")
    add_serve_arguments(serve); serve.set_defaults(func=server_cli.serve)
    keys = sub.add_parser("keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create"); add_keys_create_arguments(create)
    create.set_defaults(func=server_cli.keys_create)

Both functions return an exit code (0 success, 2 bad input) and import no server code until run.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

__all__ = ["add_keys_create_arguments", "add_serve_arguments", "keys_create", "serve"]


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="folder whose sub-folders are projects")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other needs a key first)",
    )
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="extra browser origin allowed to open the WebSocket (repeatable), "
        "e.g. https://hub.example.org behind jupyter-server-proxy",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name the server answers to besides 127.0.0.1, localhost, ::1 and --host "
        "(repeatable; '*' for any), e.g. the machine's name when listening on 0.0.0.0",
    )
    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-* headers (only behind a reverse proxy you run)",
    )
    parser.add_argument(
        "--max-open",
        type=int,
        default=None,
        metavar="N",
        help="projects kept open at once (default: 64, fewer under a low descriptor limit)",
    )
    parser.add_argument(
        "--idle-close",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="close a project nobody used for this long (default 60)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="enable CORS for this origin (repeatable; off by default)",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=20.0,
        metavar="PER_SECOND",
        help="requests per second per key, bursts of 5x (0 disables; default 20)",
    )
    parser.add_argument(
        "--max-body",
        type=int,
        default=64 * 1024,
        metavar="BYTES",
        help="largest request body accepted (default 65536)",
    )
    parser.add_argument(
        "--keys-file", type=Path, default=None, help="keys file (default ROOT/.novelkit-keys.json)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (default info; keys and tickets are never logged)",
    )


def add_keys_create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="the folder served by novelkit serve")
    parser.add_argument(
        "--scope",
        choices=["read", "write"],
        required=True,
        help="read: status, events, downloads; write: also start/pause/run/export",
    )
    parser.add_argument(
        "--project",
        default=None,
        metavar="ID",
        help="limit the key to one project (its folder name)",
    )
    parser.add_argument("--name", default="", help="a note to recognise the key by")
    parser.add_argument(
        "--keys-file", type=Path, default=None, help="keys file (default ROOT/.novelkit-keys.json)"
    )


def serve(args: argparse.Namespace) -> int:
    """Run the sidecar in the foreground until Ctrl-C."""
    import uvicorn

    from .app import create_app
    from .limits import RateLimit
    from .serving import check_exposure, uvicorn_config, with_bound_host

    root: Path = args.root
    if not root.is_dir():
        print(f"novelkit serve: {root} is not a folder", file=sys.stderr)
        return 2
    try:
        check_exposure(root, args.host, args.keys_file)
    except (PermissionError, ValueError) as exc:
        print(f"novelkit serve: {exc}", file=sys.stderr)
        return 2
    limit = (
        RateLimit(args.rate_limit, max(1, int(args.rate_limit * 5)))
        if args.rate_limit > 0
        else None
    )
    app = create_app(
        root,
        keys_path=args.keys_file,
        cors_origins=args.cors_origin,
        allowed_origins=args.allow_origin,
        rate_limit=limit,
        max_body=args.max_body,
        allowed_hosts=with_bound_host(args.allow_host, args.host),
        proxy_headers=args.proxy_headers,
        max_open=args.max_open,
        idle_close=args.idle_close,
    )
    config = uvicorn_config(
        app, args.host, args.port, log_level=args.log_level, proxy_headers=args.proxy_headers
    )
    config.load()
    # This process only serves: what exists now (modules, the app) lives until it exits, and
    # frozen it is left out of every full collection, which then pauses the loop half as long.
    gc.collect()
    gc.freeze()
    print(
        f"novelkit sidecar on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr
    )
    uvicorn.Server(config).run()
    return 0


def keys_create(args: argparse.Namespace) -> int:
    """Create a key and print it once on stdout."""
    from .auth import create_key, keys_path_for

    try:
        key = create_key(
            args.root, args.scope, args.project, keys_path=args.keys_file, name=args.name
        )
    except ValueError as exc:
        print(f"novelkit keys create: {exc}", file=sys.stderr)
        return 2
    where = args.keys_file or keys_path_for(args.root)
    limit = f" for project {args.project!r}" if args.project else ""
    print(
        f"created a {args.scope} key{limit} (stored hashed in {where}); it is shown only now:",
        file=sys.stderr,
    )
    print(key)
    return 0
