"""The origin side of witnessing: gather cosignatures of our own checkpoints.

After every append (and once at start) the node sends its newest checkpoint to every active
witness of the manifest with C2SP tlog-witness ``add-checkpoint``, verifies each returned
cosignature against that witness's ``witness_vkey``, and stores the note with the cosignature
lines appended as our log's checkpoint (``logs.checkpoint`` and the ``checkpoints`` row of
that size).  It is the same note with extra signature lines, so receipts and verifiers are
unaffected; peers that enforce ``policy.witness_quorum`` can apply our entries once enough
cosignatures are there (spec/sync.md §9).

Like the doorbell, gathering never delays the request that appended: one background task,
and a burst of appends coalesces to the latest checkpoint (checkpoints are cumulative).  A
witness that answers 409 tells us the size it holds; we resend with a proof from that size.
While fewer witnesses than the quorum cosigned, the task retries with backoff until a newer
checkpoint replaces the pending one.  Witnesses, their endpoints and keys are read from the
manifest in force at each attempt, so a manifest update applies to the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Final

import aiohttp
import structlog
from sqlalchemy import update
from yarl import URL

from federation.client.signer import SignedSession
from federation.core.checkpoint import Checkpoint
from federation.core.cosignature import verify_cosignature
from federation.core.keys import SigningKey
from federation.core.manifest import Manifest, Member, Role
from federation.core.note import NoteSignature, SignedNote, add_signatures
from federation.errors import FederationError, PeerError
from federation.log import reader
from federation.store import Store
from federation.store.schema import checkpoints, logs
from federation.sync.witness import SIZE_CONTENT_TYPE, format_add_checkpoint

log = structlog.get_logger(__name__)

WITNESS_PATH: Final = "/v1/witness/add-checkpoint"
MAX_CONFLICT_RETRIES: Final = 3
RETRY_BASE: Final = 1.0
RETRY_MAX: Final = 60.0
MAX_ANSWER_BYTES: Final = 16 * 1024


def witnesses(manifest: Manifest, self_id: str, now: int) -> list[Member]:
    """Active witness members other than ourselves (a log never witnesses itself)."""
    return [
        m
        for m in manifest.members
        if Role.WITNESS in m.roles
        and m.witness_vkey is not None
        and m.id != self_id
        and manifest.is_active(m.id, now)
    ]


class Cosigner:
    """Background gathering of witness cosignatures (see module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        manifest: Callable[[], Manifest],
        self_id: str,
        origin: str,
        transport_key: SigningKey,
        keyid: str,
        clock: Callable[[], float],
        timeout: aiohttp.ClientTimeout,
        on_cosigned: Callable[[str], None],
    ) -> None:
        self._store = store
        self._manifest = manifest
        self._self_id = self_id
        self._origin = origin
        self._key, self._keyid, self._clock = transport_key, keyid, clock
        self._timeout = timeout
        self._on_cosigned = on_cosigned
        self._session: aiohttp.ClientSession | None = None
        self._sizes: dict[str, int] = {}  # witness id -> size we believe it holds
        self._latest: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def wanted(self) -> bool:
        """Whether the manifest in force lists any witness but us."""
        return bool(witnesses(self._manifest(), self._self_id, int(self._clock())))

    def submit(self, note: str) -> None:
        """Gather cosignatures for our checkpoint ``note`` (returns at once)."""
        if self._closed:
            return
        self._latest = note
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="cosigner")

    def retry_now(self) -> None:
        """A new manifest is in force (a witness may have moved or joined): retry a pending
        checkpoint at once instead of after the backoff."""
        if self._latest is not None and not self._closed:
            self._wake.set()

    async def close(self) -> None:
        """Stop gathering (shutdown) and close the HTTP session."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        delay = RETRY_BASE
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            note = self._latest
            if note is None:
                continue
            try:
                complete = await self.gather(note)
            except Exception:  # a bug here must not kill the task; it is logged
                log.exception("cosign_crashed")
                complete = False
            if complete or self._latest != note:
                delay = RETRY_BASE
                if self._latest == note:
                    self._latest = None
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.set()
            delay = min(RETRY_MAX, delay * 2)

    async def gather(self, note: str) -> bool:
        """Ask every witness to cosign ``note``; store what came back.  True when every
        witness cosigned (nothing left to retry)."""
        now = int(self._clock())
        members = witnesses(self._manifest(), self._self_id, now)
        if not members:
            return True
        signed = SignedNote.parse(note)
        cp = Checkpoint.parse_body(signed.text)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._ask(m, cp, note)) for m in members]
        sigs = [s for t in tasks if (s := t.result()) is not None]
        if sigs:
            cosigned = add_signatures(signed, sigs).serialise()
            await self._store_note(cp, cosigned)
            log.info("checkpoint_witnessed", size=cp.size, cosignatures=len(sigs))
            self._on_cosigned(cosigned)
        return len(sigs) == len(members)

    async def _store_note(self, cp: Checkpoint, note: str) -> None:
        """Replace the stored note of size ``cp.size`` by the cosigned one (same root only)."""
        async with self._store.transaction() as conn:
            await conn.execute(
                update(logs)
                .where(logs.c.origin == self._origin, logs.c.size == cp.size)
                .where(logs.c.root == cp.root)
                .values(checkpoint=note)
            )
            await conn.execute(
                update(checkpoints)
                .where(checkpoints.c.origin == self._origin, checkpoints.c.size == cp.size)
                .where(checkpoints.c.root == cp.root)
                .values(note=note)
            )

    async def _ask(self, witness: Member, cp: Checkpoint, note: str) -> NoteSignature | None:
        key = witness.witness_key()
        assert key is not None
        for _ in range(MAX_CONFLICT_RETRIES):
            old = self._sizes.get(witness.id, 0)
            if old > cp.size:
                return None  # it already holds a newer checkpoint of ours
            try:
                proof = await self._proof(old, cp.size)
                status, ctype, body = await self._post(
                    witness, format_add_checkpoint(old, proof, note)
                )
            except FederationError as exc:
                log.warning("cosign_failed", witness=witness.id, code=exc.code)
                return None
            if status == 409 and ctype == SIZE_CONTENT_TYPE:
                text = body.decode("ascii", "replace").strip()
                if not text.isdigit() or int(text) > cp.size:
                    log.warning("cosign_failed", witness=witness.id, code="bad_witness_size")
                    return None
                self._sizes[witness.id] = int(text)
                continue
            if status != 200:
                log.warning("cosign_refused", witness=witness.id, status=status)
                return None
            return self._check(witness, body, cp, note)
        return None

    def _check(
        self, witness: Member, answer: bytes, cp: Checkpoint, note: str
    ) -> NoteSignature | None:
        key = witness.witness_key()
        assert key is not None
        text = SignedNote.parse(note).text
        try:
            lines = answer.decode("utf-8").splitlines()
            for line in lines:
                sig = NoteSignature.parse_line(line)
                if sig.name == key.name:
                    verify_cosignature(text, sig, key)
                    self._sizes[witness.id] = cp.size
                    return sig
        except (FederationError, UnicodeDecodeError) as exc:
            log.warning("cosign_bad_answer", witness=witness.id, error=type(exc).__name__)
            return None
        log.warning("cosign_bad_answer", witness=witness.id, error="no cosignature by witness")
        return None

    async def _proof(self, old: int, size: int) -> list[bytes]:
        if old == 0 or old == size:
            return []
        async with self._store.read() as conn:
            return list(await reader.consistency_proof(conn, self._origin, old, size))

    async def _post(self, witness: Member, body: bytes) -> tuple[int, str, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        signed = SignedSession(
            self._session,
            key=self._key,
            keyid=self._keyid,
            destination=witness.id,
            clock=self._clock,
        )
        base = URL(witness.endpoint.rstrip("/"))
        url = base.with_path(base.path.rstrip("/") + WITNESS_PATH)
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        try:
            async with signed.request("POST", url, body=body, headers=headers) as resp:
                data = b""
                async for chunk in resp.content.iter_chunked(4096):
                    data += chunk
                    if len(data) > MAX_ANSWER_BYTES:
                        raise PeerError(
                            f"witness {witness.id} answer exceeds {MAX_ANSWER_BYTES} bytes",
                            code="peer_bad_response",
                        )
                return resp.status, resp.content_type, data
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PeerError(
                f"witness {witness.id} unreachable: {type(exc).__name__}", code="peer_unreachable"
            ) from None
