"""OpinionBook: aggregate status, latest verdict per member, reversible quarantine."""

from __future__ import annotations

from federation.matching.status import ACTIVE, OpinionBook

KEY = ("police", 7)


def test_no_opinion_is_active() -> None:
    assert OpinionBook(0).status(KEY) is ACTIVE


def test_objection_disputes_with_counts() -> None:
    book = OpinionBook(0)
    book.record(KEY, "platform", "true_positive")
    assert book.status(KEY).status == "active"
    book.record(KEY, "hotline", "disputed_label")
    got = book.status(KEY)
    assert got.status == "disputed"
    assert got.opinions == {"true_positive": 1, "false_positive": 0, "disputed_label": 1}
    assert not got.quarantined


def test_latest_verdict_of_a_member_replaces_its_earlier_one() -> None:
    book = OpinionBook(0)
    book.record(KEY, "platform", "false_positive")
    book.record(KEY, "platform", "true_positive")
    assert book.status(KEY).status == "active"
    assert book.status(KEY).opinions["false_positive"] == 0


def test_quarantine_needs_distinct_independent_members_and_is_reversible() -> None:
    book = OpinionBook(2)
    book.record(KEY, "platform", "false_positive")
    book.record(KEY, "platform", "false_positive")
    book.record(KEY, "police", "false_positive")  # the origin itself is not independent
    assert not book.is_quarantined(KEY)
    book.record(KEY, "hotline", "false_positive")
    assert book.is_quarantined(KEY)
    assert book.status(KEY).quarantined
    assert book.quarantined_count == 1
    book.record(KEY, "hotline", "true_positive")
    assert not book.is_quarantined(KEY)


def test_quarantine_disabled_at_zero() -> None:
    book = OpinionBook(0)
    for member in ("a", "b", "c"):
        book.record(KEY, member, "false_positive")
    assert not book.is_quarantined(KEY)
