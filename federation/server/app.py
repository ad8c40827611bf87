"""The node's aiohttp application, built from an explicit :class:`NodeContext`.

Middlewares, outermost first:

1. request id — takes a sane ``X-Request-Id`` or makes one, binds it into structlog's
   context variables for every log line of the request, and echoes it in the response;
2. metrics — counts and times every request by route pattern and final status;
3. errors — the only place exceptions become HTTP (:mod:`federation.server.errors`);
4. auth — RFC 9421 request signatures (:mod:`federation.server.auth`) on every route that is
   not public.

Public routes (no signature needed, signatures ignored): ``GET /healthz``, ``/readyz``,
``/metrics``, ``/v1/manifest``, and every ``GET`` under ``/v1/log/`` and ``/v1/logs/`` —
checkpoints, entries and proofs are meant to be fetched by anyone who audits, and they hold
only what the members signed for the federation.  Everything else — all writes,
``/v1/match`` and ``/v1/status`` — needs a signature.  Requests to routes that do not exist
get 404/405 without authentication, which reveals nothing the public spec does not.
"""

from __future__ import annotations

import importlib
import re
import uuid
from collections.abc import Callable
from typing import cast

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from federation.server.auth import auth_middleware
from federation.server.context import NODE, NodeContext
from federation.server.errors import error_middleware
from federation.server.metrics import metrics_middleware
from federation.server.routes import admin as admin_routes
from federation.server.routes import log as log_routes
from federation.server.routes import ops as ops_routes
from federation.server.routes import submit as submit_routes
from federation.server.routes import sync as sync_routes
from federation.server.routes import witness as witness_routes

MATCH_ROUTES_MODULE = "federation.server.routes.match"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/manifest"})
PUBLIC_PREFIXES = ("/v1/log/", "/v1/logs/")
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def is_public(request: web.Request) -> bool:
    """Whether ``request`` may be served without a signature (see module docstring)."""
    if request.match_info.http_exception is not None:
        return True  # unknown route or method: answered 404/405 by the error middleware
    if request.method not in ("GET", "HEAD"):
        return False
    path = request.path
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Correlate log lines of one request; a client-chosen id is kept only if it is tame."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if _REQUEST_ID_RE.fullmatch(given) else uuid.uuid4().hex
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        response = await handler(request)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _add_match_routes(app: web.Application) -> None:
    """Mount ``POST /v1/match`` when its module exists.

    The match routes are written separately (``federation/server/routes/match.py``); until
    that module lands the node serves everything else.  Only the absence of that very module
    is tolerated: an import error inside it is a bug and propagates.
    """
    try:
        module = importlib.import_module(MATCH_ROUTES_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != MATCH_ROUTES_MODULE:
            raise
        return
    add_routes = cast(Callable[[web.Application], None], module.add_routes)
    add_routes(app)


def create_app(ctx: NodeContext) -> web.Application:
    """The node's application; resources in ``ctx`` are owned by the caller."""
    app = web.Application(
        client_max_size=ctx.config.limits.max_body_bytes,
        middlewares=[
            request_id_middleware,
            metrics_middleware(ctx.metrics),
            error_middleware(ctx.metrics.auth_failure),
            auth_middleware(
                resolver=ctx.resolver,
                nonces=ctx.nonces,
                destination=ctx.config.node.member_id,
                clock=ctx.clock,
                is_public=is_public,
            ),
        ],
    )
    app[NODE] = ctx
    ops_routes.add_routes(app)
    log_routes.add_routes(app)
    submit_routes.add_routes(app)
    sync_routes.add_routes(app)
    witness_routes.add_routes(app)
    admin_routes.add_routes(app)
    _add_match_routes(app)
    return app
