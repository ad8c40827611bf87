"""In-memory match index: exact PDQ radius search and exact MD5/SHA-256 lookup.

Pure compute, no I/O.  :class:`PdqIndex` is the numeric core (rows, tombstones, segments);
:class:`MatchIndex` maps rows to the log entries that carried them.
"""

from federation.core.signals import DIHEDRAL_TRANSFORMS
from federation.index.match import EntryRef, ExactIndex, Match, MatchIndex
from federation.index.pdq import Hits, PdqIndex, pdq_words

__all__ = [
    "DIHEDRAL_TRANSFORMS",
    "EntryRef",
    "ExactIndex",
    "Hits",
    "Match",
    "MatchIndex",
    "PdqIndex",
    "pdq_words",
]
