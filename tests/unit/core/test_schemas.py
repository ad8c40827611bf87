"""The committed spec/schemas/*.json are exactly what the models generate (no drift)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from federation.core.schemas import render_schema, wire_schemas

SCHEMAS = Path(__file__).resolve().parents[3] / "spec" / "schemas"
HINT = "regenerate with HASHFED_WRITE_SCHEMAS=1 pytest tests/unit/core/test_schemas.py"


def test_committed_schemas_match_models() -> None:
    generated = wire_schemas()
    if os.environ.get("HASHFED_WRITE_SCHEMAS"):
        for name, schema in generated.items():
            (SCHEMAS / f"{name}.json").write_text(render_schema(schema), encoding="utf-8")
    committed = {p.stem for p in SCHEMAS.glob("*.json")}
    assert set(generated) <= committed, HINT
    for name, schema in generated.items():
        text = (SCHEMAS / f"{name}.json").read_text(encoding="utf-8")
        assert text == render_schema(schema), f"spec/schemas/{name}.json drifted; {HINT}"


def test_schemas_describe_every_field() -> None:
    """Docstrings per field reach the schemas (use_attribute_docstrings)."""
    schema = wire_schemas()["signed-entry"]
    submission = schema["$defs"]["Submission"]["properties"]
    assert "opaque case reference" in submission["case_ref"]["description"].lower()
    assert submission["origin"]["pattern"] == "^[a-z0-9][a-z0-9.-]*$"
    for name, model in schema["$defs"].items():
        if name in ("Submission", "Retraction", "Opinion", "EntryRef", "Labels", "SignedEntry"):
            for prop, spec in model["properties"].items():
                assert spec.get("description"), f"{name}.{prop} has no description"


def test_vector_entries_have_the_schema_keys() -> None:
    """Cheap shape check: each vector entry's keys are properties of its kind's schema."""
    vectors = json.loads((SCHEMAS.parent / "vectors" / "entries.json").read_text("utf-8"))
    defs = wire_schemas()["entry"]["$defs"]
    for vec in vectors["vectors"]:
        entry = vec["entry"]
        props = defs[entry["kind"].capitalize()]["properties"]
        assert set(entry) <= set(props)
