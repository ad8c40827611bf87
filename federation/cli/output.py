"""Printing helpers shared by the ``hashfed`` subcommands: tables, JSON lines, a progress bar.

Commands print results on stdout and nothing else there, so that ``--json`` output can be piped
into ``jq`` line by line; progress and notices go to stderr.  The progress bar draws only when
stderr is a terminal, because a bar redrawn with carriage returns turns a CI log or a
redirected file into noise.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TextIO

# Cells are printed to a terminal: a label or name from a manifest must not be able to move the
# cursor or rewrite earlier lines, so control characters are shown escaped.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe_text(value: object) -> str:
    """``str(value)`` with control characters (ESC, CR, ...) replaced by ``\\xNN`` escapes."""
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def format_table(rows: Iterable[Sequence[object]], headers: Sequence[str] | None = None) -> str:
    """Rows as left-aligned columns separated by two spaces; no trailing spaces.

    Every row must have as many cells as the header (or the first row): a ragged table is a
    programming error, so it raises ``ValueError`` rather than printing misaligned output.
    """
    table = [[safe_text(c) for c in row] for row in rows]
    if headers is not None:
        table.insert(0, [safe_text(h) for h in headers])
    if not table:
        return ""
    width = len(table[0])
    if any(len(row) != width for row in table):
        raise ValueError("every table row needs the same number of cells")
    widths = [max(len(row[i]) for row in table) for i in range(width)]
    lines = []
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def print_table(
    rows: Iterable[Sequence[object]],
    headers: Sequence[str] | None = None,
    *,
    file: TextIO | None = None,
) -> None:
    """Print :func:`format_table` (nothing at all for an empty table without headers)."""
    text = format_table(rows, headers)
    if text:
        print(text, file=file or sys.stdout)


def format_fields(pairs: Iterable[tuple[str, object]]) -> str:
    """``key: value`` lines with the values aligned (a record summary)."""
    items = [(safe_text(k) + ":", safe_text(v)) for k, v in pairs]
    if not items:
        return ""
    width = max(len(k) for k, _ in items)
    return "\n".join(f"{k.ljust(width)} {v}".rstrip() for k, v in items)


def print_fields(pairs: Iterable[tuple[str, object]], *, file: TextIO | None = None) -> None:
    """Print :func:`format_fields`."""
    text = format_fields(pairs)
    if text:
        print(text, file=file or sys.stdout)


def json_line(value: Mapping[str, Any] | Sequence[Any]) -> str:
    """One compact JSON document on one line, keys sorted so output is stable across runs."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def print_json(value: Mapping[str, Any] | Sequence[Any], *, file: TextIO | None = None) -> None:
    """Print one JSON line and flush, so a consumer reading a pipe sees each record at once."""
    out = file or sys.stdout
    print(json_line(value), file=out)
    out.flush()


def notice(message: str) -> None:
    """A human note on stderr (warnings, next steps) that never mixes into stdout results."""
    print(f"hashfed: {message}", file=sys.stderr)


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal.

    Use as a context manager; call :meth:`advance` per item.  ``total=None`` shows a counter
    without a bar (input of unknown length, e.g. a CSV read as a stream).  The bar redraws at
    most once per percent so that a million tiny items do not spend their time printing.
    """

    def __init__(
        self,
        total: int | None,
        label: str = "",
        *,
        width: int = 30,
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.total = total
        self.label = safe_text(label)
        self.width = width
        self.done = 0
        self._stream = stream or sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._last_drawn: int | None = None

    @property
    def enabled(self) -> bool:
        """Whether anything is drawn."""
        return self._enabled

    def render(self) -> str:
        """The current line (without the carriage return)."""
        prefix = f"{self.label} " if self.label else ""
        if not self.total:
            return f"{prefix}{self.done}"
        fraction = min(self.done / self.total, 1.0)
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        return f"{prefix}[{bar}] {self.done}/{self.total} {int(fraction * 100):3d}%"

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done and redraw if the visible state changed."""
        self.done += n
        if not self._enabled:
            return
        step = self.done if not self.total else self.done * 100 // self.total
        if step != self._last_drawn:
            self._last_drawn = step
            self._stream.write("\r" + self.render())
            self._stream.flush()

    def close(self) -> None:
        """End the bar's line so later stderr output starts on a fresh line."""
        if self._enabled and self._last_drawn is not None:
            self._stream.write("\n")
            self._stream.flush()
            self._last_drawn = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
