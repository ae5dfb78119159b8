"""The app's subcommands of ``opcod`` (entry points in pyproject.toml): ``serve`` (``app.serve``), ``demo``
(``app.demo``) and ``gc`` (``app.gc``)."""

from __future__ import annotations

import argparse

from app import demo, gc, serve


def register_serve(subparsers) -> None:
    sp = subparsers.add_parser("serve", help="web app + REST API, and local training worker(s)",
                               description=serve.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.serve_arguments(sp)
    sp.set_defaults(func=serve.cmd_serve)


def register_demo(subparsers) -> None:
    sp = subparsers.add_parser("demo", help="prepare the offline demo, queue the demo run and serve it",
                               description=demo.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.serve_arguments(sp)
    sp.set_defaults(func=demo.cmd_demo)


def register_gc(subparsers) -> None:
    sp = subparsers.add_parser("gc", help="remove what no run needs: orphan run directories, killed saves, old "
                               "optimizer state", description=gc.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("--dry-run", action="store_true", help="report what would be removed; remove nothing")
    sp.set_defaults(func=gc.cmd_gc)
