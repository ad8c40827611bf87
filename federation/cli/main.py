"""``hashfed`` entry point: parses arguments, dispatches, and maps errors to exit codes.

Each subcommand lives in its own module exposing ``register(subparsers)``; that function adds
its parser and sets ``func`` (taking the parsed namespace, returning an exit code).  This is
the only place that turns exceptions into exit codes: 0 ok, 1 failure, 2 usage or input error,
3 node or peer unreachable.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable, Sequence

from federation import __version__
from federation.errors import ConfigError, FederationError, InputError, PeerError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

# Command name -> module, in the order `hashfed --help` lists them.  A run imports only the
# module of the command it runs, so `hashfed keys show` does not pay for numpy, aiohttp and
# SQLAlchemy at start-up; `hashfed --help` imports them all.
COMMANDS: dict[str, str] = {
    "hash": "federation.cli.hash_cmd",
    "serve": "federation.cli.serve_cmd",
    "keys": "federation.cli.keys_cmd",
    "manifest": "federation.cli.manifest_cmd",
    "verify-receipt": "federation.cli.receipt_cmd",
    "init": "federation.cli.init_cmd",
    "audit": "federation.cli.audit_cmd",
    "log": "federation.cli.log_cmd",
    "submit": "federation.cli.submit_cmd",
    "match": "federation.cli.match_cmd",
    "retract": "federation.cli.retract_cmd",
    "opinion": "federation.cli.opinion_cmd",
    "status": "federation.cli.status_cmd",
    "admin": "federation.cli.admin_cmd",
    "demo": "federation.cli.demo_cmd",
}


def _wanted(argv: Sequence[str] | None) -> list[str]:
    """The modules to import for ``argv``: the named command's alone, or all of them."""
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if not a.startswith("-")), None)
    if first in COMMANDS:
        return [COMMANDS[first]]
    return list(COMMANDS.values())


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the subcommands ``argv`` needs registered (all when ``argv`` is [])."""
    parser = argparse.ArgumentParser(
        prog="hashfed",
        description="Share and match signed hashes of confirmed abuse images — never the images.",
    )
    parser.add_argument("--version", action="version", version=f"hashfed {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _wanted(argv if argv is not None else []):
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def exit_code_for(exc: BaseException) -> int:
    """Map an exception to the documented exit code."""
    if isinstance(exc, PeerError | ConnectionError | TimeoutError):
        return EXIT_UNREACHABLE
    if isinstance(exc, InputError | ConfigError | FileNotFoundError):
        return EXIT_USAGE
    return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hashfed``; returns (and, as a console script, exits with) the exit code."""
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("hashfed: interrupted", file=sys.stderr)
        return 130
    except (FederationError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        message = exc.message if isinstance(exc, FederationError) else str(exc)
        code = f" [{exc.code}]" if isinstance(exc, FederationError) else ""
        print(f"hashfed: error{code}: {message}", file=sys.stderr)
        return exit_code_for(exc)


if __name__ == "__main__":
    sys.exit(main())
