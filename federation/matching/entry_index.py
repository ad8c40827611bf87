"""The service's :class:`~federation.index.MatchIndex`, plus the bulk add its load needs and
the index's public API does not offer yet: PDQ rows given as ``(n, 4)`` uint64 words, several
logs in one call.  The load decodes every hash of every log in bulk and builds ONE segment for
all of them, instead of validating each hash as a string (``add_pdq_batch`` normalises every
value: ~0.9 µs a hash, 9 s at 10M) and building a segment per page.

It writes the row → entry columns through ``MatchIndex._refs``; the method belongs in
``federation.index.match`` as a public one, where it can move with its owner's code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from federation.index import MatchIndex


class EntryIndex(MatchIndex):
    """:class:`MatchIndex` plus :meth:`add_pdq_words`."""

    def add_pdq_words(
        self, words: npt.NDArray[np.uint64], parts: Sequence[tuple[str, npt.NDArray[np.int64]]]
    ) -> None:
        """Index ``words`` (one row per entry; any 256 bits are a valid PDQ hash) in one add:
        the first ``len(parts[0][1])`` rows are the entries of member ``parts[0][0]`` at those
        log indexes, the next ones those of ``parts[1]``, and so on."""
        total = sum(int(indexes.shape[0]) for _, indexes in parts)
        if total != words.shape[0]:
            raise ValueError(f"{words.shape[0]} PDQ rows for {total} log indexes")
        if not total:
            return
        rows = self.pdq.add(words)
        at = 0
        for origin, indexes in parts:
            k = int(indexes.shape[0])
            if k:
                self._refs.put(rows[at : at + k], origin, indexes)
            at += k
