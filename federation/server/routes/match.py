"""Match routes: ``POST /v1/match``, and local content for retroactive alerts.

``POST /v1/match`` looks up 1..1000 signals against every entry this node holds (its own log
and every mirrored one).  PDQ is an exact radius search (default radius: the manifest policy's
``pdq_threshold``; ``max_distance`` 0..63 overrides it per request); with ``dihedral: true``
each PDQ query is also tried in its 8 rotations/flips and a match names the transform.  MD5 and
SHA-256 are exact.  Retracted and quarantined entries never appear.  Results are ordered by
(distance, origin, index), at most ``MAX_MATCHES`` per signal (``truncated`` says when more
existed).  Queries need no PDQ quality: it describes the *submitted* image, not the upload.

``POST /v1/local-content`` registers the platform's own content hashes.  They stay in this
node's database, are written to no log and never leave the node; when a newly arriving
submission matches one, an alert is recorded (``GET /v1/alerts``).  Webhook delivery of alerts
is a separate component.

Who may call: client role ``match`` for matching; ``match`` or ``admin`` for local content
and alerts.  Nothing logged here contains a hash value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
)

from federation.core.signals import PDQ_MAX_DISTANCE, Md5Signal, PdqHex, Sha256Signal
from federation.errors import InputError
from federation.matching.service import MAX_MATCHES, MatchResult, MatchService, SignalResult
from federation.server.auth import require_role
from federation.server.context import NODE
from federation.server.errors import NotReadyError, validation_error
from federation.server.routes import caller, query_int, read_json

MATCH_ROLE = "match"
ADMIN_ROLE = "admin"
MAX_SIGNALS = 1000
MAX_LOCAL_ITEMS = 1000
MAX_ALERTS_PAGE = 1000
MAX_ALERT_ID = 2**31 - 1
"""Alert ids are a 32-bit integer column; a larger ``after`` overflowed PostgreSQL (a 500)."""
_MODEL = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
M = TypeVar("M", bound=BaseModel)


def _absent_not_null(value: object) -> object:
    """Refuse an explicit ``null`` for an optional field: the spec allows the field to be
    absent (meaning the default), never null, and one spelling of "default" keeps clients and
    the spec honest."""
    if value is None:
        raise ValueError("must be an integer; omit the field for the default")
    return value


class PdqQuery(BaseModel):
    """A PDQ hash to look up; ``quality`` may be sent (as ``hashfed hash`` prints it) and is
    ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    kind: Literal["pdq"] = "pdq"
    """Discriminator."""
    value: PdqHex
    """256-bit PDQ hash, 64 hex characters."""
    quality: Annotated[int, Field(ge=0, le=100)] | None = None
    """Optional PDQ quality of the query image (not used)."""

    _quality_not_null = field_validator("quality", mode="before")(_absent_not_null)


QuerySignal = Annotated[PdqQuery | Md5Signal | Sha256Signal, Field(discriminator="kind")]


class MatchRequest(BaseModel):
    """Body of ``POST /v1/match``."""

    model_config = _MODEL

    signals: list[QuerySignal]
    """1..1000 signals to look up."""
    max_distance: Annotated[StrictInt, Field(ge=0, le=PDQ_MAX_DISTANCE)] | None = None
    """PDQ radius for this request (default: the policy's ``pdq_threshold``)."""
    dihedral: StrictBool = False
    """Also try the 8 rotations/flips of every PDQ query."""

    _max_distance_not_null = field_validator("max_distance", mode="before")(_absent_not_null)


class LocalItem(BaseModel):
    """One of the platform's own content hashes."""

    model_config = _MODEL

    ref: Annotated[
        str,
        StringConstraints(
            strict=True, min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$"
        ),
    ]
    """The platform's own opaque id of the content (returned in alerts); no control characters
    (PostgreSQL text cannot hold NUL, which made it a 500 there)."""
    signal: QuerySignal
    """Its hash."""


class LocalContentRequest(BaseModel):
    """Body of ``POST /v1/local-content``."""

    model_config = _MODEL

    items: list[LocalItem]
    """1..1000 local content hashes."""


def _sized_list(body: object, key: str, maximum: int) -> None:
    """Refuse an empty or oversized list before validating every item in it."""
    if not isinstance(body, dict):
        raise InputError("body must be a JSON object", code="invalid_input")
    items = body.get(key)
    if not isinstance(items, list):
        raise InputError(f"{key} must be a list", code="invalid_input", field=key)
    if not items:
        raise InputError(f"{key} must not be empty", code="empty_batch", field=key)
    if len(items) > maximum:
        raise InputError(
            f"{key} holds {len(items)} items, more than the {maximum} allowed",
            code="batch_too_large",
            field=key,
        )


def _validate(model: type[M], body: object) -> M:
    """Validate a whole body; the error names the dotted field (``signals.3.value``)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _service(request: web.Request) -> MatchService:
    matcher = request.app[NODE].matcher
    if not isinstance(matcher, MatchService) or not matcher.ready:
        raise NotReadyError("the match index is not loaded")
    return matcher


def _require_local_role(request: web.Request) -> None:
    principal = caller(request)
    if ADMIN_ROLE not in principal.roles:
        require_role(principal, MATCH_ROLE)
    else:
        require_role(principal, ADMIN_ROLE)  # still refuses suspended members


def _match_json(m: MatchResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "origin": m.origin,
        "index": m.index,
        "distance": m.distance,
        "labels": m.labels,
        "status": m.status.status,
        "leaf_hash": m.leaf_hash,
    }
    if m.transform is not None:
        out["transform"] = m.transform
    if m.status.opinions:
        out["opinions"] = m.status.opinions
    return out


def _result_json(i: int, r: SignalResult) -> dict[str, Any]:
    return {
        "signal_index": i,
        "matches": [_match_json(m) for m in r.matches],
        "truncated": r.truncated,
    }


async def post_match(request: web.Request) -> web.Response:
    """``POST /v1/match``: matches of each signal with provenance and status."""
    require_role(caller(request), MATCH_ROLE)
    service = _service(request)
    body = await read_json(request)
    _sized_list(body, "signals", MAX_SIGNALS)
    query = _validate(MatchRequest, body)
    signals = [(s.kind, s.value) for s in query.signals]
    results = await service.match(signals, query.max_distance, dihedral=query.dihedral)
    return web.json_response({"results": [_result_json(i, r) for i, r in enumerate(results)]})


async def post_local_content(request: web.Request) -> web.Response:
    """``POST /v1/local-content``: register own content hashes (idempotent per ref+signal)."""
    _require_local_role(request)
    service = _service(request)
    body = await read_json(request)
    _sized_list(body, "items", MAX_LOCAL_ITEMS)
    parsed = _validate(LocalContentRequest, body)
    rows = [(item.ref, item.signal.kind, item.signal.value) for item in parsed.items]
    ids = await service.add_local(rows)
    items = [{"ref": ref, "id": i} for (ref, _, _), i in zip(rows, ids, strict=True)]
    return web.json_response({"items": items}, status=201)


async def get_alerts(request: web.Request) -> web.Response:
    """``GET /v1/alerts?after=&limit=``: alerts recorded for local content, oldest first."""
    _require_local_role(request)
    service = _service(request)
    after = query_int(request, "after", maximum=MAX_ALERT_ID, default=0)
    limit = query_int(request, "limit", minimum=1, maximum=MAX_ALERTS_PAGE, default=100)
    alerts = await service.alerts(after, limit)
    return web.json_response({"alerts": alerts, "next": alerts[-1]["id"] if alerts else after})


def add_routes(app: web.Application) -> None:
    """Mount the match and local-content routes."""
    app.router.add_post("/v1/match", post_match)
    app.router.add_post("/v1/local-content", post_local_content)
    app.router.add_get("/v1/alerts", get_alerts)


__all__ = ["MAX_MATCHES", "add_routes"]
