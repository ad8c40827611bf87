"""Operational routes: liveness, readiness, metrics, the manifest and node status.

``/healthz`` answers as long as the process serves HTTP.  ``/readyz`` is 503 ``not_ready``
until the match index has loaded, so a load balancer sends no match traffic to a node that
would answer "no match" for content it simply has not indexed yet.  ``/v1/status`` (signed)
shows per-log and per-peer state for operators.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from federation.core.manifest import signed_manifest_json
from federation.log import reader
from federation.server.context import NODE, NodeContext
from federation.server.errors import NotReadyError
from federation.server.metrics import CONTENT_TYPE, Gauges, LabelPairs
from federation.store.schema import peers


def _ready(ctx: NodeContext) -> bool:
    return ctx.matcher is None or ctx.matcher.ready


async def healthz(request: web.Request) -> web.Response:
    """200 while the process serves requests."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 once the match index is loaded, else 503 ``not_ready``."""
    if not _ready(request.app[NODE]):
        raise NotReadyError("the match index is still loading")
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of counters, latency, log sizes and index sizes."""
    ctx = request.app[NODE]
    async with ctx.store.read() as conn:
        states = await reader.all_log_states(conn)
    log_sizes: dict[LabelPairs, float] = {
        (("origin", s.origin), ("member", s.member_id)): float(s.size) for s in states
    }
    index: dict[LabelPairs, float] = {
        (("kind", k),): float(v) for k, v in (ctx.matcher.stats() if ctx.matcher else {}).items()
    }
    evidence: dict[LabelPairs, float] = (
        {(): float(await ctx.sync.evidence_count())} if ctx.sync is not None else {}
    )
    gauges: Gauges = {
        "hashfed_log_size": ("Tree size of each log held (own and mirrored).", log_sizes),
        "hashfed_index_size": ("Entries in the match index by kind.", index),
        "hashfed_ready": ("1 when the match index is loaded.", {(): float(_ready(ctx))}),
        "hashfed_evidence": (
            "Evidence records held: split views and duplicate entry ids (origins frozen).",
            evidence,
        ),
    }
    text = ctx.metrics.render(gauges)
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


async def manifest(request: web.Request) -> web.Response:
    """The signed membership manifest this node runs with."""
    return web.json_response(signed_manifest_json(request.app[NODE].manifest))


async def status(request: web.Request) -> web.Response:
    """Member, own log, index sizes, every log held and peer replication state (signed)."""
    ctx = request.app[NODE]
    async with ctx.store.read() as conn:
        own = await reader.log_state(conn, ctx.writer.origin)
        states = await reader.all_log_states(conn)
        peer_rows = (await conn.execute(select(peers).order_by(peers.c.member_id))).all()
    return web.json_response(
        {
            "member": ctx.config.node.member_id,
            "manifest_version": ctx.manifest.manifest.version,
            "ready": _ready(ctx),
            "log": {"origin": own.origin, "size": own.size},
            "index": dict(ctx.matcher.stats()) if ctx.matcher is not None else None,
            "logs": [
                {
                    "origin": s.origin,
                    "member": s.member_id,
                    "size": s.size,
                    "frozen": s.frozen,
                    "frozen_reason": s.frozen_reason,
                }
                for s in states
            ],
            "peers": [
                {
                    "member": r.member_id,
                    "last_success": r.last_success,
                    "last_error": r.last_error,
                    "last_error_at": r.last_error_at,
                    "failures": int(r.failures),
                }
                for r in peer_rows
            ],
            "sync": ctx.sync.status() if ctx.sync is not None else None,
        }
    )


def add_routes(app: web.Application) -> None:
    """Mount the operational routes."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/manifest", manifest)
    app.router.add_get("/v1/status", status)
