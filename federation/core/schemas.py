"""JSON Schemas of the wire models, generated from the pydantic models themselves.

``spec/schemas/*.json`` are the committed output of :func:`wire_schemas`; a unit test fails
when they drift from the models, so the published schemas can never silently disagree with
what a node accepts.  The schemas describe shape for other implementations and tooling; the
normative rules (canonical encoding, free-text privacy rules, cross-field checks) are in
spec/entries.md and are enforced by the validators, not by the schemas alone.

Regenerate with ``HASHFED_WRITE_SCHEMAS=1 .venv/bin/pytest tests/unit/core/test_schemas.py``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from federation.core.entries import Entry, EntryRef, SignedEntry
from federation.core.labels import Labels
from federation.core.manifest import Manifest, SignedManifest

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _with_header(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": SCHEMA_DIALECT, "$id": f"hashfed:schemas/{name}.json", **schema}


def wire_schemas() -> dict[str, dict[str, Any]]:
    """Schema file stem → JSON Schema (validation mode) for every wire model we own."""
    schemas: dict[str, dict[str, Any]] = {
        "entry": TypeAdapter(Entry).json_schema(),
        "signed-entry": SignedEntry.model_json_schema(),
        "entry-ref": EntryRef.model_json_schema(),
        "labels": Labels.model_json_schema(),
        "manifest": Manifest.model_json_schema(),
        "signed-manifest": SignedManifest.model_json_schema(),
    }
    return {name: _with_header(name, schema) for name, schema in schemas.items()}


def render_schema(schema: dict[str, Any]) -> str:
    """The committed text form: sorted keys, two-space indent, UTF-8, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
