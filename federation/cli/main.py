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

# Subcommand modules, in the order `hashfed --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "federation.cli.hash_cmd",
    "federation.cli.serve_cmd",
    "federation.cli.keys_cmd",
    "federation.cli.manifest_cmd",
    "federation.cli.receipt_cmd",
    "federation.cli.init_cmd",
    "federation.cli.audit_cmd",
    "federation.cli.log_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="hashfed",
        description="Share and match signed hashes of confirmed abuse images — never the images.",
    )
    parser.add_argument("--version", action="version", version=f"hashfed {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
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
    parser = build_parser()
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
