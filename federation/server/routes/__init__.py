"""HTTP routes of the node, one module per area, plus the small helpers they share.

Each route module exposes ``add_routes(app)``.  Helpers here parse the edges of a request —
JSON bodies (Content-Type, strict JSON), integer query parameters, the authenticated caller —
and raise the errors the error middleware renders, always naming the field at fault.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from aiohttp import web

from federation.core.canonical import parse_json
from federation.errors import FederationError, InputError
from federation.server.auth import PRINCIPAL_KEY, Principal
from federation.server.errors import UnsupportedMediaTypeError

JSON_TYPE = "application/json"


async def read_json(request: web.Request) -> object:
    """The request body as strict JSON (no floats, no duplicate keys); 415 unless the body is
    declared ``application/json``, 400 ``invalid_json`` if it does not parse."""
    if request.content_type != JSON_TYPE:
        raise UnsupportedMediaTypeError(
            f"Content-Type must be {JSON_TYPE}, not {request.content_type or 'absent'}",
            field="Content-Type",
        )
    charset = request.charset
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise UnsupportedMediaTypeError("JSON bodies must be UTF-8", field="Content-Type")
    return parse_body(await request.read())


def parse_body(data: bytes) -> object:
    """:func:`parse_json`, with the two ways the stdlib parser fails on hostile input turned
    into 400 ``invalid_json`` instead of a 500: nesting deeper than the interpreter's recursion
    limit (a 64 KiB body holds 32k brackets) and integers longer than
    ``sys.get_int_max_str_digits()`` (4300 digits by default)."""
    try:
        return parse_json(data)
    except FederationError:
        raise
    except RecursionError:
        raise InputError("JSON is nested too deeply", code="invalid_json") from None
    except ValueError:
        raise InputError("a JSON number has too many digits", code="invalid_json") from None


def query_int(
    request: web.Request,
    name: str,
    *,
    minimum: int = 0,
    maximum: int = 2**63 - 1,
    default: int | None = None,
) -> int:
    """Integer query parameter ``name`` in ``[minimum, maximum]``; 400 ``invalid_query``."""
    values = request.query.getall(name, [])
    if not values:
        if default is not None:
            return default
        raise InputError(f"query parameter {name} is required", code="invalid_query", field=name)
    if len(values) > 1:
        raise InputError(f"query parameter {name} is repeated", code="invalid_query", field=name)
    text = values[0]
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise InputError(
            f"query parameter {name} must be a non-negative decimal integer",
            code="invalid_query",
            field=name,
        )
    value = int(text)
    if not minimum <= value <= maximum:
        raise InputError(
            f"query parameter {name} must be in {minimum}..{maximum}",
            code="invalid_query",
            field=name,
        )
    return value


def caller(request: web.Request) -> Principal:
    """The authenticated principal (set by the auth middleware on non-public routes)."""
    return request[PRINCIPAL_KEY]


def b64(values: Iterable[bytes]) -> list[str]:
    """Standard base64 of each value (proof hashes on the wire)."""
    return [base64.b64encode(v).decode() for v in values]
