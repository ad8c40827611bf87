"""Administration routes: manifest updates and lifting a freeze (spec/sync.md §10, §12).

``POST /v1/manifest`` offers a newer signed manifest.  An admin client of this node posts one
the stewards signed; peers pass on versions they accepted.  Either way it comes into force only
through :func:`~federation.core.manifest.accept_update` — a quorum of the stewards of the
version in force must have signed it — so the caller's identity adds no authority; it only has
to be someone we talk to (an ``admin`` client or an active peer).  Accepted versions are pushed
on to every other peer.

``GET /v1/manifests?after=N`` lists the accepted versions newer than N, oldest first: the
chain a peer that missed a version needs to verify the newest one link by link.

``POST /v1/admin/unfreeze`` (``admin`` client only) lifts the freeze split-view evidence put on
a mirrored log, after the operator has dealt with the cause.  The evidence stays on record;
if the origin still serves the inconsistent history, the next pull freezes the log again.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import update

from federation.core.ids import MemberId
from federation.core.manifest import parse_signed_manifest, signed_manifest_json
from federation.errors import ForbiddenError, InputError, NotFoundError
from federation.log import mirror
from federation.server.auth import Principal, require_role
from federation.server.context import NODE, NodeContext
from federation.server.errors import validation_error
from federation.server.routes import caller, query_int, read_json
from federation.store.schema import logs
from federation.sync.manifest_updates import MAX_CHAIN

ADMIN_ROLE = "admin"


class UnfreezeRequest(BaseModel):
    """Body of ``POST /v1/admin/unfreeze``."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    origin: MemberId
    """Member id of the mirrored log to unfreeze."""


def _admin_or_peer(principal: Principal) -> None:
    if principal.kind == "peer":
        if principal.suspended:
            raise ForbiddenError(
                f"member {principal.member_id} is suspended", code="member_suspended"
            )
        return
    require_role(principal, ADMIN_ROLE)


async def post_manifest(request: web.Request) -> web.Response:
    """Accept a newer signed manifest; 200 ``accepted`` or ``known``."""
    principal = caller(request)
    _admin_or_peer(principal)
    ctx: NodeContext = request.app[NODE]
    await read_json(request)  # Content-Type and strict JSON, like every JSON route
    signed = parse_signed_manifest(await request.read())
    accepted = await ctx.manifests.accept(signed)
    if accepted and ctx.gossip is not None:
        skip = principal.member_id if principal.kind == "peer" else None
        ctx.gossip.push(signed, skip=skip)
    return web.json_response(
        {"version": ctx.manifest.manifest.version, "outcome": "accepted" if accepted else "known"}
    )


async def get_manifests(request: web.Request) -> web.Response:
    """Accepted manifests newer than ``after``, oldest first (at most 100)."""
    after = query_int(request, "after", default=0)
    chain = await request.app[NODE].manifests.history(after, MAX_CHAIN)
    return web.json_response({"manifests": [signed_manifest_json(s) for s in chain]})


async def post_unfreeze(request: web.Request) -> web.Response:
    """Lift the freeze on a mirrored log; the evidence stays."""
    require_role(caller(request), ADMIN_ROLE)
    ctx: NodeContext = request.app[NODE]
    body: Any = await read_json(request)
    try:
        wanted = UnfreezeRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    member = ctx.manifest.manifest.member(wanted.origin)
    if member is None or member.id == ctx.config.node.member_id:
        raise NotFoundError(f"{wanted.origin!r} is not a log this node mirrors", code="unknown_log")
    async with ctx.store.transaction() as conn:
        reason = await mirror.is_frozen(conn, member.log_origin)
        if reason is None:
            raise InputError(f"log of {member.id} is not frozen", code="not_frozen", field="origin")
        result = await conn.execute(
            update(logs)
            .where(logs.c.origin == member.log_origin)
            .values(frozen=False, frozen_reason=None)
        )
        if result.rowcount != 1:
            raise InputError(
                f"log of {member.id} holds no signed state to resume from (evidence only)",
                code="not_frozen",
                field="origin",
            )
    if ctx.sync is not None:
        ctx.sync.unfrozen(member.id)
    return web.json_response({"origin": member.id, "unfrozen": True, "reason": reason})


def add_routes(app: web.Application) -> None:
    """Mount the administration routes."""
    app.router.add_post("/v1/manifest", post_manifest)
    app.router.add_get("/v1/manifests", get_manifests)
    app.router.add_post("/v1/admin/unfreeze", post_unfreeze)
