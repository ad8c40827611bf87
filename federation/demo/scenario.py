"""The demo scenario: a police unit shares one hash and two platforms block the picture.

Every step runs against real ``hashfed serve`` processes over signed HTTP, through the same
client code the ``submit``/``match``/``retract`` commands use, and checks what it claims:
a step that does not hold fails the demo (exit 1).  Replication is real too — a platform
only matches the police unit's hash once its node has pulled and verified the police log,
so the blocking steps wait for that (at most :data:`REPLICATION_WAIT` seconds).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from federation.cli.match_cmd import Query, match_queries
from federation.cli.nodeclient import NodeClient, NodeTarget
from federation.cli.output import print_json
from federation.cli.submit_cmd import labels_of, make_item, save_receipt, submit_items
from federation.demo.images import DemoImages, check_images, demo_images
from federation.demo.setup import DemoFederation, NodeProcess, write_federation
from federation.errors import FederationError

REPLICATION_WAIT = 10.0
PLATFORMS = ("platform-a", "platform-b")
EDITS = ("reference", "blurred", "resized")


class StepFailed(Exception):
    """A step did not hold; the message says what was expected and what happened."""


@dataclass(frozen=True)
class StepResult:
    """One printed step."""

    number: int
    title: str
    status: str
    """``ok``, ``FAIL``, ``skip`` or ``intr`` (interrupted)."""
    seconds: float
    detail: str


class Demo:
    """The scenario's state and steps; :meth:`run` drives them in order."""

    def __init__(self, root: Path, *, as_json: bool) -> None:
        self.root = root
        self.as_json = as_json
        self.results: list[StepResult] = []
        self.nodes: dict[str, NodeProcess] = {}
        self.clients: dict[str, NodeClient] = {}
        self.fed: DemoFederation | None = None
        self.images: DemoImages | None = None
        self.hashes: dict[str, Query] = {}
        self.quality = 0
        self.receipts: list[dict[str, Any]] = []

    # -- bookkeeping ------------------------------------------------------------------------

    def _emit(self, result: StepResult) -> None:
        self.results.append(result)
        if self.as_json:
            print_json(
                {
                    "step": result.number,
                    "title": result.title,
                    "status": result.status,
                    "seconds": round(result.seconds, 3),
                    "detail": result.detail,
                }
            )
            return
        print(f"[{result.status:>4}] {result.number:2d}. {result.title} ({result.seconds:.2f} s)")
        if result.detail:
            print(f"          {result.detail}")
        sys.stdout.flush()

    async def step(self, title: str, action: Callable[[], Awaitable[str]]) -> None:
        """Run one step, print it with its timing; StepFailed stops the scenario."""
        started = time.monotonic()
        try:
            detail = await action()
        except (StepFailed, FederationError, RuntimeError, ValueError, OSError) as exc:
            self._emit(
                StepResult(
                    len(self.results) + 1, title, "FAIL", time.monotonic() - started, str(exc)
                )
            )
            raise StepFailed(str(exc)) from None
        except asyncio.CancelledError:
            seconds = time.monotonic() - started
            self._emit(StepResult(len(self.results) + 1, title, "intr", seconds, "interrupted"))
            raise
        self._emit(
            StepResult(len(self.results) + 1, title, "ok", time.monotonic() - started, detail)
        )

    def skip(self, title: str, why: str) -> None:
        """Print a step that could not run (never counted as passed)."""
        self._emit(StepResult(len(self.results) + 1, title, "skip", 0.0, why))

    # -- steps ------------------------------------------------------------------------------

    async def draw_images(self) -> str:
        self.images = demo_images()
        check = check_images(self.images)
        self.quality = check.quality
        folder = self.root / "images"
        folder.mkdir()
        for name in (*EDITS, "unrelated"):
            path = folder / f"{name}.{'jpg' if name == 'resized' else 'png'}"
            path.write_bytes(getattr(self.images, name))
            self.hashes[name] = _query(path)
        return (
            f"PDQ quality {check.quality}; blurred {check.blurred_distance} bits, resized"
            f" {check.resized_distance} bits, unrelated {check.unrelated_distance} bits away"
        )

    async def create_federation(self) -> str:
        self.fed = write_federation(self.root)
        return f"{', '.join(self.fed.members)}; manifest {self.fed.manifest}"

    async def start_nodes(self, stack: AsyncExitStack) -> str:
        assert self.fed is not None
        for member_id, member in self.fed.members.items():
            self.nodes[member_id] = node = NodeProcess(member)
            node.start()
        await asyncio.gather(*(asyncio.to_thread(n.wait_ready) for n in self.nodes.values()))
        for member_id, member in self.fed.members.items():
            target = NodeTarget(member.url, member_id, member.client_key, member.client_key_id)
            self.clients[member_id] = await stack.enter_async_context(NodeClient(target))
        return " ".join(f"{m}={n.member.url}" for m, n in self.nodes.items())

    async def submit(self) -> str:
        labels = labels_of(["csam"], "high", "police")
        query = self.hashes["reference"]
        items = [
            make_item(
                s["kind"],
                s["value"],
                labels,
                case_ref="CR-2024-0001",
                quality=self.quality if s["kind"] == "pdq" else None,
            )
            for s in query.signals
        ]
        self.receipts = await submit_items(self.clients["police"], items)
        for receipt in self.receipts:
            save_receipt(self.root / "receipts", receipt)
        where = ", ".join(
            f"{r['entry']['entry']['signal']['kind']} #{r['index']}" for r in self.receipts
        )
        return f"police log entries {where}; receipts in {self.root / 'receipts'}"

    async def _matches(self, member: str, names: tuple[str, ...]) -> list[list[dict[str, Any]]]:
        queries = [self.hashes[n] for n in names]
        return await match_queries(self.clients[member], queries)

    async def platform_blocks(self, member: str) -> str:
        started = time.monotonic()
        deadline = started + REPLICATION_WAIT
        while not (await self._matches(member, ("reference",)))[0]:
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"{member} still has no match after {REPLICATION_WAIT:g} s:"
                    " the police log did not replicate to it"
                )
            await asyncio.sleep(0.2)
        waited = time.monotonic() - started
        found = await self._matches(member, EDITS)
        parts = []
        for name, matches in zip(EDITS, found, strict=True):
            police = [m for m in matches if m["origin"] == "police"]
            if not police:
                raise StepFailed(f"{member} does not block the {name} copy")
            parts.append(f"{name} distance {police[0]['distance']}")
        return f"{', '.join(parts)} (labels csam/high/police; replicated within {waited:.1f} s)"

    async def unrelated_passes(self) -> str:
        for member in PLATFORMS:
            (matches,) = await self._matches(member, ("unrelated",))
            if matches:
                raise StepFailed(f"{member} matched the unrelated image: {matches[0]}")
        return "no match on " + " or ".join(PLATFORMS)

    async def verify_receipt(self) -> str:
        from federation.core.manifest import parse_signed_manifest, verify_manifest
        from federation.core.receipt import verify_receipt

        assert self.fed is not None
        signed = parse_signed_manifest(self.fed.manifest.read_bytes())
        verify_manifest(signed)
        member = signed.manifest.member("police")
        assert member is not None
        receipt = verify_receipt(self.receipts[0]["receipt"], member.log_key())
        return (
            f"entry #{receipt.index} in checkpoint of size {receipt.checkpoint.size},"
            f" signed by {receipt.checkpoint.origin} (no network used)"
        )

    async def audit(self) -> str:
        assert self.fed is not None
        urls = [m.url for m in self.fed.members.values()]
        argv = [
            "-m",
            "federation",
            "audit",
            *urls,
            "--manifest",
            str(self.fed.manifest),
            "--no-state",
            "--workers",
            "1",
            "--json",
        ]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 120)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        import json

        try:
            report = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise StepFailed(f"audit exited {proc.returncode}: {err.decode()[-500:]}") from None
        if proc.returncode != 0 or report.get("verdict") != "pass":
            raise StepFailed(f"audit verdict {report.get('verdict')}: {out.decode()[-800:]}")
        sizes = ", ".join(f"{o['member_id']} {o['size']}" for o in report.get("origins", []))
        return f"verdict pass; logs checked: {sizes}"

    async def retract(self) -> str:
        items = []
        for receipt in self.receipts:
            entry = receipt["entry"]["entry"]
            target = {
                "origin": entry["origin"],
                "index": receipt["index"],
                "leaf_hash": receipt["leaf_hash"],
            }
            items.append({"id": f"retract-{entry['id']}", "target": target, "reason": "error"})
        answer = await self.clients["police"].post("/v1/retractions", {"retractions": items})
        return "retractions " + ", ".join(f"#{r['index']}" for r in answer["receipts"])

    async def stops_matching(self) -> str:
        started = time.monotonic()
        pending = set(self.clients)
        while pending:
            for member in sorted(pending):
                if not any(await self._matches(member, EDITS)):
                    pending.discard(member)
            if pending and time.monotonic() - started > REPLICATION_WAIT:
                raise StepFailed(
                    f"still matching after {REPLICATION_WAIT:g} s on: {sorted(pending)}"
                )
            if pending:
                await asyncio.sleep(0.2)
        return (
            f"no match for any copy on {', '.join(self.clients)}"
            f" (within {time.monotonic() - started:.1f} s)"
        )

    # -- driver -----------------------------------------------------------------------------

    async def run(self, audit_available: bool) -> bool:
        """Every step in order; True when all held.  Nodes are stopped by :meth:`stop_nodes`."""
        async with AsyncExitStack() as stack:
            try:
                await self.step(
                    "draw the demo images (reference, blurred, resized, unrelated)",
                    self.draw_images,
                )
                await self.step(
                    "create keys and a signed manifest: police unit, hotline,"
                    " two platforms, auditor-witness",
                    self.create_federation,
                )
                await self.step(
                    "start 5 nodes (hashfed serve, SQLite)", lambda: self.start_nodes(stack)
                )
                await self.step(
                    "police unit hashes the reference image locally and submits it (label csam)",
                    self.submit,
                )
                for member in PLATFORMS:
                    await self.step(
                        f"{member} blocks the original and edited copies",
                        partial(self.platform_blocks, member),
                    )
                await self.step(
                    "the platforms do not block an unrelated image", self.unrelated_passes
                )
                await self.step("the receipt verifies offline", self.verify_receipt)
                title = "the auditor verifies every member's log"
                if audit_available:
                    await self.step(title, self.audit)
                else:
                    self.skip(title, "hashfed audit is not available in this build")
                await self.step("police unit retracts the hash", self.retract)
                await self.step("the retracted hash stops matching everywhere", self.stops_matching)
            except StepFailed:
                return False
        return all(r.status == "ok" for r in self.results)

    def stop_nodes(self) -> None:
        """Stop every node (SIGTERM to all, then wait for each; SIGKILL after 10 s) and print
        it as the last step.  Synchronous, so it also runs while the loop is being cancelled."""
        started = time.monotonic()
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes.values():
            node.stop()
        if self.nodes:
            seconds = time.monotonic() - started
            detail = f"{len(self.nodes)} nodes stopped"
            self._emit(StepResult(len(self.results) + 1, "stop the nodes", "ok", seconds, detail))


def _query(path: Path) -> Query:
    """The hashes of an image file as a match query (PDQ, MD5, SHA-256)."""
    from federation.hashing import hash_file

    h = hash_file(path)
    signals = (
        {"kind": "pdq", "value": h.pdq},
        {"kind": "md5", "value": h.md5},
        {"kind": "sha256", "value": h.sha256},
    )
    return Query(path.name, signals)
