"""The one place where exceptions become HTTP responses (``{"error": {code, message, field}}``).

Routes, auth and storage only raise.  The middleware here maps:

- :class:`FederationError` -> ``exc.status`` and ``exc.to_json()``;
- pydantic ``ValidationError`` -> 400 ``invalid_input`` whose ``field`` is the dotted path of
  the first error in the request body (``submissions.0.signal.value``);
- aiohttp's 413 -> ``body_too_large``, unknown route -> 404 ``not_found``, wrong method -> 405
  ``method_not_allowed``, other aiohttp HTTP errors -> their status with a generic code;
- anything else -> 500 ``internal_error``, logged with its traceback and never described to
  the caller (the traceback could hold paths, SQL or key names).

A few errors exist only at the HTTP edge and are defined here as branches of the shared ones.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import ValidationError

from federation.errors import AuthError, FederationError, ForbiddenError, InputError

log = structlog.get_logger(__name__)


class UnsupportedMediaTypeError(InputError):
    """A JSON route got a body of another Content-Type."""

    code = "unsupported_media_type"
    status = 415


class PolicyError(InputError):
    """Well-formed input that federation policy refuses (e.g. PDQ quality below minimum)."""

    code = "policy_violation"
    status = 422


class NotReadyError(FederationError):
    """The node is up but cannot serve yet (match index still loading)."""

    code = "not_ready"
    status = 503


_DISCRIMINATED = frozenset({"pdq", "md5", "sha256", "submission", "retraction", "opinion"})


def validation_field(exc: ValidationError, prefix: str = "") -> str | None:
    """The dotted body path of the first error, without pydantic's union-tag segments.

    pydantic puts the tag of a discriminated union into the location (``signal.pdq.value``);
    callers know the field as ``signal.value``, so tags directly after a field are dropped.
    """
    errors = exc.errors()
    if not errors:
        return prefix or None
    parts: list[str] = [prefix] if prefix else []
    for i, part in enumerate(errors[0]["loc"]):
        text = str(part)
        if i > 0 and text in _DISCRIMINATED:
            continue
        parts.append(text)
    return ".".join(parts) or None


def validation_error(exc: ValidationError, prefix: str = "") -> InputError:
    """The InputError a request-body ValidationError means (400 ``invalid_input``)."""
    field = validation_field(exc, prefix)
    first = exc.errors()[0] if exc.errors() else None
    reason = first["msg"] if first else "invalid"
    return InputError(f"{field or 'body'}: {reason}", code="invalid_input", field=field)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _http_exception(exc: web.HTTPException) -> web.Response:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return _error(413, "body_too_large", "request body is larger than this node accepts")
    if isinstance(exc, web.HTTPNotFound):
        return _error(404, "not_found", "no such route")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        response = _error(405, "method_not_allowed", f"method {exc.method} is not allowed here")
        response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        return response
    return _error(exc.status, "http_error", exc.reason)


def error_middleware(on_auth_failure: Callable[[str], None]) -> Middleware:
    """The error-mapping middleware; ``on_auth_failure(code)`` counts 401/403s for metrics."""

    @web.middleware
    async def map_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except FederationError as exc:
            if isinstance(exc, AuthError | ForbiddenError):
                on_auth_failure(exc.code)
            if exc.status >= 500:
                log.warning("request_failed", code=exc.code, status=exc.status)
            return web.json_response(exc.to_json(), status=exc.status)
        except ValidationError as exc:
            error = validation_error(exc)
            return web.json_response(error.to_json(), status=error.status)
        except web.HTTPException as exc:
            if exc.status < 400:  # redirects and the like pass through untouched
                raise
            return _http_exception(exc)
        except Exception:
            log.exception("request_crashed", method=request.method)
            return _error(500, "internal_error", "internal error")

    return map_errors
