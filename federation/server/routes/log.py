"""Public read routes of every log this node holds: checkpoint, entry pages and proofs.

``/v1/log/...`` serves the node's own log; ``/v1/logs/{member}/...`` serves any log held here
(our own and the mirrors) by the **member id** of its origin, as listed in the manifest.
Member ids are chosen over log origins because they are short path-safe tokens, whereas
origins are URL-like (``nca.example/hashfed``) and would need percent-encoded slashes, which
proxies commonly rewrite.

Everything is served against a size we hold a signed checkpoint for (RFC 9162 §2.1 proofs),
so a verifier can check each answer against a checkpoint fetched earlier.
"""

from __future__ import annotations

import base64

from aiohttp import web

from federation.errors import NotFoundError
from federation.log import reader
from federation.server.context import NODE, NodeContext
from federation.server.routes import b64, query_int

NOTE_TYPE = "text/plain; charset=utf-8"


def _origin(request: web.Request) -> str:
    """The log origin addressed by the route: ours, or the named member's."""
    ctx: NodeContext = request.app[NODE]
    member_id = request.match_info.get("member")
    if member_id is None:
        return ctx.writer.origin
    member = ctx.manifest.manifest.member(member_id)
    if member is None:
        raise NotFoundError(f"no member {member_id!r} in the manifest", code="unknown_log")
    return member.log_origin


async def checkpoint(request: web.Request) -> web.Response:
    """The latest signed checkpoint (C2SP tlog-checkpoint note), as ``text/plain``."""
    origin = _origin(request)
    async with request.app[NODE].store.read() as conn:
        state = await reader.log_state(conn, origin)
    return web.Response(body=state.note.encode(), headers={"Content-Type": NOTE_TYPE})


async def entries(request: web.Request) -> web.Response:
    """Leaves ``[start, start+limit)`` within the current checkpoint, base64, plus its size."""
    origin = _origin(request)
    start = query_int(request, "start", default=0)
    limit = query_int(request, "limit", minimum=1, maximum=reader.MAX_PAGE, default=100)
    async with request.app[NODE].store.read() as conn:
        state = await reader.log_state(conn, origin)
        page = await reader.leaves(conn, origin, start, limit)
    return web.json_response(
        {
            "entries": [
                {"index": leaf.index, "leaf": base64.b64encode(leaf.leaf).decode()} for leaf in page
            ],
            "size": state.size,
        }
    )


async def inclusion(request: web.Request) -> web.Response:
    """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size``."""
    origin = _origin(request)
    index = query_int(request, "index")
    size = query_int(request, "size", minimum=1)
    async with request.app[NODE].store.read() as conn:
        proof = await reader.inclusion_proof(conn, origin, index, size)
    return web.json_response({"index": index, "size": size, "proof": b64(proof)})


async def consistency(request: web.Request) -> web.Response:
    """RFC 9162 consistency proof from tree size ``from`` to ``to``."""
    origin = _origin(request)
    first = query_int(request, "from", minimum=1)
    second = query_int(request, "to", minimum=1)
    async with request.app[NODE].store.read() as conn:
        proof = await reader.consistency_proof(conn, origin, first, second)
    return web.json_response({"from": first, "to": second, "proof": b64(proof)})


def add_routes(app: web.Application) -> None:
    """Mount the log read routes for our own log and for any held log by member id."""
    for prefix in ("/v1/log", "/v1/logs/{member}"):
        app.router.add_get(f"{prefix}/checkpoint", checkpoint)
        app.router.add_get(f"{prefix}/entries", entries)
        app.router.add_get(f"{prefix}/proof/inclusion", inclusion)
        app.router.add_get(f"{prefix}/proof/consistency", consistency)
