"""Replication routes: the notify doorbell and evidence (spec/sync.md §5, §5.1, §6).

``POST /v1/notify`` is for peers only: the caller must be a member's transport key (not one of
our own clients), active in the manifest; the authenticated member id — never anything in the
body — is who gets its backoff reset and who is recorded as the source of any evidence.

``GET /v1/evidence`` lists what this node holds against other members' logs — split views
(both raw signed notes) and duplicate entry ids (both leaves with inclusion proofs and the
signed checkpoint) — with the reason, the peer that served it and when.  Any signed caller may read
it; evidence is meant to be passed on.  Both answer 503 ``sync_disabled`` on a node that runs
without replication.
"""

from __future__ import annotations

from aiohttp import web

from federation.errors import ForbiddenError, InputError
from federation.server.context import NODE
from federation.server.errors import NotReadyError
from federation.server.routes import caller, parse_body, query_int
from federation.sync.service import SyncService

MAX_EVIDENCE = 1000


class SyncDisabledError(NotReadyError):
    """This node does not replicate, so it neither takes doorbells nor holds evidence."""

    code = "sync_disabled"


def _service(request: web.Request) -> SyncService:
    service = request.app[NODE].sync
    if service is None:
        raise SyncDisabledError("replication is not running on this node")
    return service


async def post_notify(request: web.Request) -> web.Response:
    """``POST /v1/notify``: a peer's new checkpoint; 202 with the outcome."""
    principal = caller(request)
    if principal.kind != "peer" or principal.member_id is None:
        raise ForbiddenError("only federation peers may ring the doorbell", code="not_a_peer")
    if principal.suspended:
        raise ForbiddenError(f"member {principal.member_id} is suspended", code="member_suspended")
    service = _service(request)
    body = await request.read()
    try:
        parse_body(body)  # JSON too deep or with too long a number: 400 here, not a 500 later
    except InputError as exc:
        raise InputError(
            f"notify body is not JSON: {exc.message}", code="invalid_notify", field="$"
        ) from None
    answer = await service.notify(principal.member_id, body)
    return web.json_response(answer, status=202)


async def get_evidence(request: web.Request) -> web.Response:
    """``GET /v1/evidence?limit=``: stored evidence, newest first."""
    limit = query_int(request, "limit", minimum=1, maximum=MAX_EVIDENCE, default=100)
    return web.json_response({"evidence": await _service(request).evidence(limit)})


def add_routes(app: web.Application) -> None:
    """Mount the replication routes."""
    app.router.add_post("/v1/notify", post_notify)
    app.router.add_get("/v1/evidence", get_evidence)
