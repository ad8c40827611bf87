"""Client items become entries with ONE validation, yet exactly as the item model judges them.

The write routes validate an item directly as the entry (plus the node's origin and time) and
fall back to the item model only to explain a refusal.  These tests hold that shortcut to the
two-step definition: the same entry for every valid item, and for every invalid one the very
error (code, field, message) the item model gives.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from federation.core.entries import Opinion, Retraction, Submission
from federation.errors import InputError
from federation.server.errors import validation_error
from federation.server.routes.submit import (
    OpinionItem,
    RetractionItem,
    SubmissionItem,
    _entry,
)

STAMP: dict[str, object] = {"origin": "police", "created": 1_700_000_000}
LABELS = {"categories": ["csam"], "severity": "high", "confirmed_by": "police"}
REF = {"origin": "police", "index": 3, "leaf_hash": "ab" * 32}
PDQ = {"kind": "pdq", "value": "f" * 64, "quality": 90}

KINDS: dict[str, tuple[type[BaseModel], type[Submission | Retraction | Opinion]]] = {
    "submissions": (SubmissionItem, Submission),
    "retractions": (RetractionItem, Retraction),
    "opinions": (OpinionItem, Opinion),
}

VALID = [
    ("submissions", {"id": "a", "signal": PDQ, "labels": LABELS}),
    ("submissions", {"id": "b", "signal": {"kind": "md5", "value": "AB" * 16}, "labels": LABELS}),
    ("submissions", {"id": "c", "signal": PDQ, "labels": LABELS, "case_ref": "case-7"}),
    ("submissions", {"id": "d", "signal": PDQ, "labels": LABELS, "case_ref": None}),
    ("retractions", {"id": "r", "target": REF, "reason": "error"}),
    ("retractions", {"id": "r", "target": REF, "reason": "legal", "note": "court order"}),
    ("opinions", {"id": "o", "target": {**REF, "origin": "hotline"}, "verdict": "true_positive"}),
    ("opinions", {"id": "o", "target": REF, "verdict": "disputed_label", "comment": "labels"}),
]

INVALID = [
    ("submissions", {"id": "a", "signal": PDQ, "labels": LABELS, "origin": "police"}),
    ("submissions", {"id": "a", "signal": PDQ, "labels": LABELS, "created": 1}),
    ("submissions", {"id": "a", "signal": PDQ, "labels": LABELS, "kind": "submission"}),
    ("submissions", {"id": "a", "signal": PDQ, "labels": LABELS, "colour": "red"}),
    ("submissions", {"id": "a", "signal": {**PDQ, "quality": "high"}, "labels": LABELS}),
    ("submissions", {"id": "a", "signal": {"kind": "md5", "value": "xyz"}, "labels": LABELS}),
    ("submissions", {"id": "", "signal": PDQ, "labels": LABELS}),
    ("submissions", {"signal": PDQ, "labels": LABELS}),
    ("submissions", {"id": "a", "signal": PDQ, "labels": {**LABELS, "severity": "huge"}}),
    ("submissions", ["not", "an", "object"]),
    ("submissions", "text"),
    ("retractions", {"id": "r", "target": REF, "reason": "bored"}),
    ("retractions", {"id": "r", "target": {**REF, "index": -1}, "reason": "error"}),
    ("opinions", {"id": "o", "target": REF, "verdict": "maybe"}),
]


def two_steps(key: str, raw: object) -> Any:
    """The definition: validate the item, then the entry from its fields and the stamp."""
    item, model = KINDS[key]
    valid = item.model_validate(raw)
    fields = {name: value for name, value in dict(valid).items() if value is not None}
    return model.model_validate({**fields, **STAMP})


@pytest.mark.parametrize(("key", "raw"), VALID)
def test_a_valid_item_gives_the_entry_of_the_two_step_definition(key: str, raw: object) -> None:
    item, model = KINDS[key]
    entry = _entry(item, model, raw, STAMP, f"{key}.0")
    expected = two_steps(key, raw)
    assert type(entry) is model
    assert entry == expected
    assert entry.model_dump(mode="json", exclude_none=True) == expected.model_dump(
        mode="json", exclude_none=True
    )


@pytest.mark.parametrize(("key", "raw"), INVALID)
def test_an_invalid_item_is_refused_with_the_item_models_error(key: str, raw: object) -> None:
    item, model = KINDS[key]
    with pytest.raises(ValidationError) as by_item:
        item.model_validate(raw)
    expected = validation_error(by_item.value, f"{key}.2")
    with pytest.raises(InputError) as refused:
        _entry(item, model, raw, STAMP, f"{key}.2")
    got = refused.value
    assert (got.code, got.field, got.message) == (expected.code, expected.field, expected.message)
    assert got.field is not None
    assert got.field.startswith(f"{key}.2")


def test_a_retraction_of_another_origins_entry_is_refused_by_the_entry_model() -> None:
    raw = {"id": "r", "target": {**REF, "origin": "hotline"}, "reason": "error"}
    RetractionItem.model_validate(raw)  # a well-formed item ...
    with pytest.raises(InputError) as refused:  # ... that no retraction of ours may carry
        _entry(RetractionItem, Retraction, raw, STAMP, "retractions.0")
    assert (refused.value.code, refused.value.field) == ("invalid_input", "retractions.0.target")
