"""``hashfed serve --config node.toml``: run one member's node until SIGTERM/SIGINT.

Logs go to stderr as JSON lines (structlog: ISO timestamps, ``level``, the request id of the
request being served); stdout carries only the ``listening on http://host:port`` line that
supervisors and the integration harness wait for.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import structlog

from federation.config import load_config
from federation.node import serve

EXIT_OK = 0


def configure_logging(level: int = logging.INFO) -> None:
    """structlog JSON lines on stderr; call once per process."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="run this member's node (HTTP API, own log, match index)",
        description="Run one member's node from a TOML config (see deploy/node.example.toml).",
    )
    parser.add_argument(
        "--config", required=True, type=Path, metavar="PATH", help="node TOML config file"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, then serve until a termination signal."""
    configure_logging(getattr(logging, args.log_level.upper()))
    config = load_config(args.config)
    asyncio.run(serve(config))
    return EXIT_OK
