"""``hashfed demo``: the whole federation on one machine in about half a minute.

In a temporary directory, on the embedded SQLite default: keys and a signed manifest for a
police unit, a hotline, two platforms and an auditor-witness; five real ``hashfed serve``
processes on free loopback ports; the police unit submits the hash of a (generated) reference
image; both platforms block the original and edited copies but not an unrelated image; the
receipt verifies offline; the auditor verifies every log; the hash is retracted and stops
matching everywhere.  Each step prints with its timing.

The nodes are stopped and the directory removed at the end, also on Ctrl-C or SIGTERM
(``--keep`` keeps the directory to look at: configs, keys, node logs, receipts, images).
Exit 0 only when every step held; 1 when one did not (its line says why); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from federation.cli.output import notice, print_json

EXIT_INTERRUPTED = 130


async def _drive(root: Path, as_json: bool) -> bool:
    from federation.cli.main import COMMANDS
    from federation.demo.scenario import Demo

    demo = Demo(root, as_json=as_json)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await demo.run(audit_available="audit" in COMMANDS)
    finally:
        demo.stop_nodes()
        loop.remove_signal_handler(signal.SIGTERM)


def run(args: argparse.Namespace) -> int:
    """Run the scenario; always stop the nodes and (without --keep) remove the directory."""
    root = Path(tempfile.mkdtemp(prefix="hashfed-demo-"))
    started = time.monotonic()
    interrupted = False
    passed = False
    try:
        passed = asyncio.run(_drive(root, args.json))
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
    finally:
        if args.keep:
            notice(f"kept the demo directory {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    total = time.monotonic() - started
    result = "interrupted" if interrupted else "pass" if passed else "fail"
    if args.json:
        print_json({"result": result, "seconds": round(total, 3), "directory": str(root)})
    else:
        print(f"demo {result.upper()} in {total:.1f} s")
    if interrupted:
        return EXIT_INTERRUPTED
    return 0 if passed else 1


def register(subparsers: Any) -> None:
    """Add ``demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="run a five-member federation locally and show sharing, blocking and retraction",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", action="store_true", help="one JSON object per step")
    parser.set_defaults(func=run)
