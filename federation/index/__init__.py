"""In-memory match index: exact PDQ radius search and exact MD5/SHA-256 lookup.

Pure compute, except :mod:`federation.index.snapshot` (``PdqIndex.save``/``load``), which
writes and reads an index snapshot directory.  :class:`PdqIndex` is the numeric core (rows,
tombstones, segments; amortised O(1) updates with rebuilds on a background thread);
:class:`MatchIndex` maps row ids to the log entries that carried them.
"""

from federation.core.signals import DIHEDRAL_TRANSFORMS
from federation.index.match import EntryRef, ExactIndex, Match, MatchIndex
from federation.index.pdq import Hits, IndexStats, PdqIndex, pdq_words

__all__ = [
    "DIHEDRAL_TRANSFORMS",
    "EntryRef",
    "ExactIndex",
    "Hits",
    "IndexStats",
    "Match",
    "MatchIndex",
    "PdqIndex",
    "pdq_words",
]
