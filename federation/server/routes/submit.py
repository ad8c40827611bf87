"""Write routes: submissions, retractions and opinions appended to this member's own log.

Each request is a batch (1..``limits.max_batch``) of entries *without* ``origin`` and
``created``: the node fills in its member id and the current time, signs each entry and
appends the batch atomically (:class:`federation.log.writer.LogWriter`, which may commit
concurrent requests in one transaction under one checkpoint: spec/log.md *Appending*).  The
answer is sent only once the batch is durable, and carries for every entry a receipt that
verifies offline with nothing but the member's log key (c2sp.org/tlog-proof, leaf bytes as
``extra``).

Ids make retries safe: resending an entry id returns the stored entry (``existing: true``)
with the same index and leaf hash; the same id with other content is 409 ``id_conflict``.

Who may write: a client key with role ``submit``.  Submissions and retractions also need this
member to hold the manifest role ``submitter``; opinions (feedback on matches) do not, since
platforms that only consume give them too.
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Sequence
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from federation.core.entries import (
    EntryRef,
    Opinion,
    Retraction,
    RetractionReason,
    Submission,
    Verdict,
    leaf_bytes,
)
from federation.core.ids import EntryId
from federation.core.labels import CaseRef, Comment, Labels, Note
from federation.core.manifest import Role
from federation.core.receipt import TlogProof
from federation.core.signals import PdqSignal, Signal
from federation.errors import FederationError, ForbiddenError, InputError
from federation.log import reader, tree
from federation.log.writer import AnyEntry, AppendResult
from federation.server.auth import require_role
from federation.server.context import NODE, NodeContext
from federation.server.errors import PolicyError, validation_error
from federation.server.routes import JSON_TYPE, caller, read_json

CLIENT_ROLE = "submit"
_ITEM = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
M = TypeVar("M", bound=BaseModel)
E = TypeVar("E", Submission, Retraction, Opinion)


class SubmissionItem(BaseModel):
    """One submission as a client sends it (the node adds origin and created)."""

    model_config = _ITEM

    id: EntryId
    """Client-chosen id, unique within this member; makes retries idempotent."""
    signal: Signal
    """The hash to share."""
    labels: Labels
    """Taxonomy labels."""
    case_ref: CaseRef | None = None
    """Opaque case reference."""


class RetractionItem(BaseModel):
    """One retraction as a client sends it."""

    model_config = _ITEM

    id: EntryId
    """Client-chosen id."""
    target: EntryRef
    """One of this member's own submissions."""
    reason: RetractionReason
    """Why it is withdrawn."""
    note: Note | None = None
    """Short free text."""


class OpinionItem(BaseModel):
    """One opinion as a client sends it."""

    model_config = _ITEM

    id: EntryId
    """Client-chosen id."""
    target: EntryRef
    """The entry (any member's) the opinion is about."""
    verdict: Verdict
    """``true_positive``, ``false_positive`` or ``disputed_label``."""
    comment: Comment | None = None
    """Free text."""


def _batch(value: object, key: str, max_batch: int) -> list[object]:
    """The list under ``key`` of a request body, checked for shape and size before items are
    validated (a huge batch is refused without validating every item)."""
    if not isinstance(value, dict):
        raise InputError("body must be a JSON object", code="invalid_input", field=None)
    unknown = sorted(set(value) - {key})
    if unknown:
        raise InputError(
            f"unknown field {unknown[0]!r}", code="invalid_input", field=str(unknown[0])
        )
    items = value.get(key)
    if not isinstance(items, list):
        raise InputError(f"{key} must be a list", code="invalid_input", field=key)
    if not items:
        raise InputError(f"{key} must not be empty", code="empty_batch", field=key)
    if len(items) > max_batch:
        raise InputError(
            f"{key} holds {len(items)} entries, more than the {max_batch} allowed",
            code="batch_too_large",
            field=key,
        )
    return items


def _validate(model: type[M], data: object, prefix: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, prefix) from None


_NODE_FIELDS = frozenset({"kind", "origin", "created"})
"""Entry fields the node sets; a client item naming one is refused (by the item model)."""


def _stamp(ctx: NodeContext) -> dict[str, object]:
    """The fields the node sets on every entry of a request: its member id and the time."""
    return {"origin": ctx.config.node.member_id, "created": int(ctx.clock())}


def _entry(
    item: type[BaseModel], model: type[E], raw: object, stamp: dict[str, object], prefix: str
) -> E:
    """The entry for client item ``raw``: its fields plus the node's ``stamp``.

    One validation on the common path: an item that names no node-set field validates as the
    entry itself, whose fields are the item's own with the same types.  Anything refused is
    validated again as the item, so every error (code, field path, message) is the one the
    item model gives; what only the entry model refuses (a retraction of another origin's
    entry) is then refused by it, as before.
    """
    if type(raw) is dict and _NODE_FIELDS.isdisjoint(raw):
        try:
            return model.model_validate({**raw, **stamp})
        except ValidationError:
            pass
    valid = _validate(item, raw, prefix)
    return _validate(model, {**dict(valid), **stamp}, prefix)


def _need_submitter(ctx: NodeContext) -> None:
    if Role.SUBMITTER not in ctx.member.roles:
        raise ForbiddenError(
            f"member {ctx.member.id!r} does not hold the manifest role submitter",
            code="not_a_submitter",
        )


async def _receipts(ctx: NodeContext, result: AppendResult) -> bytes:
    """The ``{"receipts": [...]}`` body, built as bytes.

    Proofs of a fresh batch come from the hashes the append already holds (no read).  Each
    entry is spliced in as its leaf bytes — the canonical JSON of the signed entry — instead
    of being dumped from the model and encoded again, and what every receipt of the batch
    shares (the checkpoint note, the upper proof hashes) is encoded once.
    """
    size = result.checkpoint.size
    indexes = [item.index for item in result.appended]
    proofs = tree.proofs_from_known(indexes, size, result.tree_hashes)
    if proofs is None:  # an idempotent retry: older leaves need stored hashes
        async with ctx.store.read() as conn:
            proofs = await reader.inclusion_proofs(
                conn, ctx.writer.origin, indexes, size, result.tree_hashes
            )
    note = result.note
    note_json = json.dumps(note).encode()
    encoded: dict[bytes, str] = {}
    parts: list[bytes] = []
    for item, proof in zip(result.appended, proofs, strict=True):
        leaf = item.leaf or leaf_bytes(item.signed)
        hashes = []
        for h in proof:
            text = encoded.get(h)
            if text is None:
                text = encoded[h] = base64.b64encode(h).decode()
            hashes.append(text)
        receipt = TlogProof(item.index, tuple(proof), note, extra=leaf).serialise()
        parts.append(
            b'{"entry":%b,"index":%d,"leaf_hash":"%b","checkpoint":%b,"inclusion_proof":%b,'
            b'"receipt":%b,"existing":%b}'
            % (
                leaf,
                item.index,
                item.leaf_hash.hex().encode(),
                note_json,
                json.dumps(hashes).encode(),
                json.dumps(receipt).encode(),
                b"true" if item.existing else b"false",
            )
        )
    return b'{"receipts":[' + b",".join(parts) + b"]}"


async def _append(ctx: NodeContext, key: str, batch: Sequence[AnyEntry]) -> web.Response:
    try:
        result = await ctx.writer.append(batch)
    except FederationError as exc:
        # the writer names fields relative to the batch ("3.id"); callers know "submissions.3.id"
        if exc.field is not None and exc.field[:1].isdigit():
            exc.field = f"{key}.{exc.field}"
        raise
    fresh = [(ctx.writer.origin, a.index, a.signed) for a in result.appended if not a.existing]
    if fresh and ctx.matcher is not None:
        outcome = ctx.matcher.on_entries(fresh)
        if inspect.isawaitable(outcome):
            await outcome
    if fresh and ctx.sync is not None:
        ctx.sync.own_appended(result.note)  # peers pull at once (fire and forget)
    body = await _receipts(ctx, result)
    return web.Response(body=body, status=201, content_type=JSON_TYPE, charset="utf-8")


def _prepare(request: web.Request, submitter: bool) -> NodeContext:
    ctx = request.app[NODE]
    require_role(caller(request), CLIENT_ROLE)
    if submitter:
        _need_submitter(ctx)
    return ctx


async def post_submissions(request: web.Request) -> web.Response:
    """``POST /v1/submissions``: append submissions, answer 201 with receipts."""
    ctx = _prepare(request, submitter=True)
    items = _batch(await read_json(request), "submissions", ctx.config.limits.max_batch)
    minimum = ctx.manifest.manifest.policy.min_pdq_quality
    stamp = _stamp(ctx)
    batch: list[AnyEntry] = []
    for i, raw in enumerate(items):
        prefix = f"submissions.{i}"
        entry = _entry(SubmissionItem, Submission, raw, stamp, prefix)
        if isinstance(entry.signal, PdqSignal) and entry.signal.quality < minimum:
            raise PolicyError(
                f"PDQ quality {entry.signal.quality} is below the federation minimum {minimum}",
                code="pdq_quality_too_low",
                field=f"{prefix}.signal.quality",
            )
        batch.append(entry)
    return await _append(ctx, "submissions", batch)


async def post_retractions(request: web.Request) -> web.Response:
    """``POST /v1/retractions``: tombstone earlier submissions of this member."""
    ctx = _prepare(request, submitter=True)
    items = _batch(await read_json(request), "retractions", ctx.config.limits.max_batch)
    stamp = _stamp(ctx)
    batch: list[AnyEntry] = [
        _entry(RetractionItem, Retraction, raw, stamp, f"retractions.{i}")
        for i, raw in enumerate(items)
    ]
    return await _append(ctx, "retractions", batch)


async def post_opinions(request: web.Request) -> web.Response:
    """``POST /v1/opinions``: record this member's verdicts on entries."""
    ctx = _prepare(request, submitter=False)
    items = _batch(await read_json(request), "opinions", ctx.config.limits.max_batch)
    stamp = _stamp(ctx)
    batch: list[AnyEntry] = [
        _entry(OpinionItem, Opinion, raw, stamp, f"opinions.{i}") for i, raw in enumerate(items)
    ]
    return await _append(ctx, "opinions", batch)


def add_routes(app: web.Application) -> None:
    """Mount the write routes."""
    app.router.add_post("/v1/submissions", post_submissions)
    app.router.add_post("/v1/retractions", post_retractions)
    app.router.add_post("/v1/opinions", post_opinions)
