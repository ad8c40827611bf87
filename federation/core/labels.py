"""The labels taxonomy ``hashfed-labels/v1`` and the privacy rules for free text.

Labels say *what* a signal is (category), *how bad* (severity) and *who confirmed it*, so a
consumer can decide per category whether to block, queue for review or only alert.  The
taxonomy is small and versioned: a new category means a new taxonomy version, so no node ever
has to guess what an unknown string means (spec/entries.md §3).

This module also owns the validation of every free-text field in an entry (case references,
retraction notes, opinion comments).  Entries are replicated to every member and kept forever,
so none of them may carry a victim's name, a link or an address: case references are opaque
tokens from a restricted alphabet, and free text is bounded and refuses URLs and e-mail
addresses.  Validators raise ``ValueError`` so pydantic keeps the field path.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict

TAXONOMY_V1: Literal["hashfed-labels/v1"] = "hashfed-labels/v1"

CASE_REF_MAX = 64
NOTE_MAX = 280
COMMENT_MAX = 500


class Category(StrEnum):
    """What the content is.  Several may apply (an AI-generated NCII deepfake of a minor)."""

    CSAM = "csam"
    CSAM_AI_GENERATED = "csam-ai-generated"
    NCII = "ncii"
    NCII_DEEPFAKE = "ncii-deepfake"


class Severity(StrEnum):
    """How urgent action on a match is; ordered ``low < medium < high < critical``.

    Named levels rather than numbers so a label read in a log or an alert needs no lookup
    table; :meth:`rank` gives the order for policy comparisons.
    """

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """1 (low) … 4 (critical)."""
        return _SEVERITY_ORDER.index(self) + 1


_SEVERITY_ORDER = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


class ConfirmedBy(StrEnum):
    """Who confirmed the content is what the categories say (the trust basis of the entry)."""

    POLICE = "police"
    HOTLINE = "hotline"
    PLATFORM = "platform"


def _check_categories(value: tuple[Category, ...]) -> tuple[Category, ...]:
    if not value:
        raise ValueError("at least one category is required")
    if len(set(value)) != len(value):
        raise ValueError("categories must not repeat")
    # Sorted on input so the signed form is unique whatever order a client sent.
    return tuple(sorted(value))


class Labels(BaseModel):
    """The labels of one submission, in taxonomy ``hashfed-labels/v1``."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    taxonomy: Literal["hashfed-labels/v1"] = TAXONOMY_V1
    """Taxonomy version; a node rejects labels of a taxonomy it does not know."""
    categories: Annotated[tuple[Category, ...], AfterValidator(_check_categories)]
    """Non-empty, without repeats; stored sorted (input order does not matter)."""
    severity: Severity
    """Urgency of action on a match: ``low``, ``medium``, ``high`` or ``critical``."""
    confirmed_by: ConfirmedBy
    """Who confirmed the content: ``police``, ``hotline`` or ``platform``."""


_CASE_REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:-]*")
_URL_SCHEME_RE = re.compile(r"(?i)(https?|ftp|file|mailto|tel|data|urn|sms):")
_EMAIL_RE = re.compile(r"[^\s@]+@[^\s@]+")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


def _looks_like_link(value: str) -> str | None:
    """Why ``value`` looks like contact data or a link, or None."""
    if "://" in value or re.search(r"(?i)\bwww\.|\bmailto:", value):
        return "must not contain a URL"
    if _EMAIL_RE.search(value):
        return "must not contain an e-mail address"
    return None


def check_case_ref(value: str) -> str:
    """Validate an opaque case reference (e.g. ``CR-2024-000123``).

    Rules: 1–64 characters of ``A-Z a-z 0-9 _ : -``, starting with a letter or digit, at least
    one digit, no URL scheme prefix.  The alphabet alone excludes spaces, ``/``, ``.`` and
    ``@``, so names with spaces, URLs, domain names and e-mail addresses cannot pass; the digit
    rule rejects a bare word, which is more likely a name than a case number.
    """
    if not 1 <= len(value) <= CASE_REF_MAX:
        raise ValueError(f"case reference must be 1-{CASE_REF_MAX} characters, got {len(value)}")
    if reason := _looks_like_link(value):
        raise ValueError(f"case reference {reason}; use an opaque reference")
    if "." in value:
        raise ValueError("case reference must not contain '.' (it looks like a domain name)")
    if not _CASE_REF_RE.fullmatch(value):
        raise ValueError(
            "case reference must be opaque: only A-Z, a-z, 0-9, '_', ':', '-', "
            "starting with a letter or digit (no names, spaces, URLs or e-mail addresses)"
        )
    if _URL_SCHEME_RE.match(value):
        raise ValueError("case reference must not start with a URL scheme")
    if not any(c.isdigit() for c in value):
        raise ValueError("case reference must contain a digit (opaque ids, never names)")
    return value


def _free_text(limit: int, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not 1 <= len(value) <= limit:
            raise ValueError(f"{what} must be 1-{limit} characters, got {len(value)}")
        if _CONTROL_RE.search(value):
            raise ValueError(f"{what} must not contain control characters")
        if reason := _looks_like_link(value):
            raise ValueError(f"{what} {reason} (entries are replicated to every member)")
        return value

    return AfterValidator(check)


CaseRef = Annotated[
    str,
    Strict(),
    AfterValidator(check_case_ref),
    Field(
        json_schema_extra={"pattern": r"^[A-Za-z0-9][A-Za-z0-9_:-]*$", "maxLength": CASE_REF_MAX}
    ),
]
"""An opaque case reference (see :func:`check_case_ref`)."""

Note = Annotated[
    str, Strict(), _free_text(NOTE_MAX, "note"), Field(json_schema_extra={"maxLength": NOTE_MAX})
]
"""Short free text on a retraction: at most 280 characters, no control characters or links."""

Comment = Annotated[
    str,
    Strict(),
    _free_text(COMMENT_MAX, "comment"),
    Field(json_schema_extra={"maxLength": COMMENT_MAX}),
]
"""Free text on an opinion: at most 500 characters, no control characters or links."""

__all__ = [
    "TAXONOMY_V1",
    "CaseRef",
    "Category",
    "Comment",
    "ConfirmedBy",
    "Labels",
    "Note",
    "Severity",
    "check_case_ref",
]
