"""The one error hierarchy of hashfed.

Every failure that hashfed raises on purpose is a :class:`FederationError`.  Each carries a
stable machine ``code`` (documented in ``spec/protocol.md``), a human ``message`` and, where
the failure is about one input, the ``field`` it concerns.  Only the server's error middleware
turns these into HTTP responses (using ``status``) and only the CLI's ``main`` turns them into
exit codes, so the rest of the code raises and never formats.
"""

from __future__ import annotations


class FederationError(Exception):
    """Base of every deliberate hashfed failure."""

    code: str = "internal_error"
    status: int = 500

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field

    def to_json(self) -> dict[str, object]:
        """The wire form ``{"error": {"code", "message", "field"}}`` used by every endpoint."""
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}


class VerificationError(FederationError):
    """A signature, proof, checkpoint or log failed to verify (or was malformed)."""

    code = "verification_failed"
    status = 422


class InputError(FederationError):
    """Bad input from a caller: malformed, out of range, or against policy."""

    code = "invalid_input"
    status = 400


class NotFoundError(FederationError):
    """The thing asked for does not exist (yet)."""

    code = "not_found"
    status = 404


class ConflictError(FederationError):
    """The request conflicts with what is stored (e.g. an id reused with other content)."""

    code = "conflict"
    status = 409


class AuthError(FederationError):
    """Request authentication failed (RFC 9421 signature, key, replay, window, destination)."""

    code = "unauthenticated"
    status = 401


class ForbiddenError(FederationError):
    """Authenticated but not allowed: suspended member or missing role."""

    code = "forbidden"
    status = 403


class PeerError(FederationError):
    """A remote peer was unreachable or answered with something we cannot use."""

    code = "peer_error"
    status = 502


class StorageError(FederationError):
    """The database is unusable: unknown schema, integrity violation, lost connection."""

    code = "storage_error"
    status = 503


class ConfigError(FederationError):
    """The node or CLI configuration is invalid."""

    code = "config_error"
    status = 500
