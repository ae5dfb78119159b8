"""The app's subcommands of ``opcod`` (entry points in pyproject.toml): ``serve`` (``app.serve``) and ``demo``
(``app.demo``)."""

from __future__ import annotations

import argparse

from app import demo, serve


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
