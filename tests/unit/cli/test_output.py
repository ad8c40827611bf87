"""Printing helpers: aligned tables, stable JSON lines, a progress bar only on terminals."""

from __future__ import annotations

import io
import json

import pytest

from federation.cli.output import ProgressBar, format_fields, format_table, json_line, safe_text


def test_table_aligns_columns_without_trailing_spaces() -> None:
    text = format_table(
        [("a.example", "submitter", "x"), ("b", "consumer,auditor", "")], ("ID", "ROLES", "NOTE")
    )
    assert text.splitlines() == [
        "ID         ROLES             NOTE",
        "a.example  submitter         x",
        "b          consumer,auditor",
    ]
    assert format_table([]) == ""


def test_ragged_table_is_an_error() -> None:
    with pytest.raises(ValueError, match="same number of cells"):
        format_table([("a", "b"), ("c",)])


def test_control_characters_are_escaped() -> None:
    assert safe_text("evil\x1b[2Jname\r") == "evil\\x1b[2Jname\\x0d"
    assert "\x1b" not in format_table([("\x1b]0;x\x07",)])
    assert format_fields([("a", 1), ("long key", "v")]).splitlines() == [
        "a:        1",
        "long key: v",
    ]


def test_json_line_is_one_sorted_line() -> None:
    line = json_line({"b": 1, "a": "é\nx"})
    assert "\n" not in line
    assert line == '{"a":"é\\nx","b":1}'
    assert json.loads(line) == {"a": "é\nx", "b": 1}


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_only() -> None:
    quiet = io.StringIO()
    with ProgressBar(10, "x", stream=quiet) as bar:
        bar.advance(10)
    assert not bar.enabled
    assert quiet.getvalue() == ""

    tty = _Tty()
    with ProgressBar(4, "hashing", width=4, stream=tty) as bar:
        for _ in range(4):
            bar.advance()
    out = tty.getvalue()
    assert out.endswith("\rhashing [####] 4/4 100%\n")
    assert "\rhashing [##--] 2/4  50%" in out
    assert out.count("\r") == 4


def test_progress_counter_without_total() -> None:
    tty = _Tty()
    bar = ProgressBar(None, stream=tty)
    bar.advance(3)
    assert bar.render() == "3"
    bar.close()
    assert tty.getvalue() == "\r3\n"
