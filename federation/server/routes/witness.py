"""The witness route: ``POST /v1/witness/add-checkpoint`` (C2SP tlog-witness, spec/sync.md §9).

Mounted on every node; a node whose member is not a ``witness`` in the manifest in force, or
that has no ``keys.witness_key``, answers 404 ``not_a_witness``.  The body and the answers are
the C2SP wire format, not JSON: 200 ``text/plain`` cosignature lines, and 409 with
``Content-Type: text/x.tlog.size`` and our size when the caller's ``old`` is stale — that
answer is written here because the error middleware speaks JSON.  Other failures use the
spec's status codes with the usual JSON error body.

Any signed caller may submit: the authority is the log's signature on the checkpoint, and a
cosignature only says "consistent with what I cosigned before".
"""

from __future__ import annotations

from aiohttp import web

from federation.core.manifest import Role
from federation.errors import NotFoundError
from federation.server.context import NODE
from federation.server.routes import caller
from federation.sync.witness import SIZE_CONTENT_TYPE, WitnessSizeConflict, cosignature_lines

NOTE_TYPE = "text/plain; charset=utf-8"


async def add_checkpoint(request: web.Request) -> web.Response:
    """Verify, record and cosign a checkpoint of any member's log."""
    caller(request)  # authenticated by the middleware; anyone signed may submit
    ctx = request.app[NODE]
    witness = ctx.witness
    if witness is None or Role.WITNESS not in ctx.member.roles:
        raise NotFoundError("this node is not a witness", code="not_a_witness")
    try:
        signatures = await witness.add_checkpoint(await request.read())
    except WitnessSizeConflict as exc:
        return web.Response(
            status=409, body=f"{exc.size}\n".encode(), headers={"Content-Type": SIZE_CONTENT_TYPE}
        )
    return web.Response(
        body=cosignature_lines(signatures).encode(), headers={"Content-Type": NOTE_TYPE}
    )


def add_routes(app: web.Application) -> None:
    """Mount the witness route."""
    app.router.add_post("/v1/witness/add-checkpoint", add_checkpoint)
