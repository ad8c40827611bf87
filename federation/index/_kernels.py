"""Compiled inner loops of the PDQ index (numba), with the flag that says whether they exist.

The probe-and-verify loop of multi-index hashing touches a few thousand buckets and candidates
per query; in numpy each step is a separate array pass with temporaries, compiled it is one
tight loop whose cache misses the CPU overlaps.  Everything here is optional: when numba is not
importable ``HAVE_NUMBA`` is False and :mod:`federation.index.pdq` uses its numpy path, which
returns exactly the same results.

Hashes are ``(n, 4)`` uint64 rows (the 32 hash bytes viewed as four native words).  A chunk is
a bit range ``[start, start + width)`` of that 256-bit row, ``width <= 32``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

numba: Any
try:  # pragma: no cover - exercised by whichever environment runs the tests
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    numba = None
    HAVE_NUMBA = False


def _jit(fn: F) -> F:
    """``numba.njit`` (cached, GIL released so batch threads run in parallel) or identity."""
    if numba is None:  # pragma: no cover
        return fn
    return cast(F, numba.njit(cache=True, nogil=True)(fn))


@_jit
def _popcount64(x: Any) -> Any:
    # The SWAR idiom below is recognised by LLVM and compiled to a single POPCNT instruction.
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@_jit
def _chunk(row: Any, start: int, width: int) -> Any:
    """Bits ``[start, start + width)`` of a 4-word row as an unsigned integer."""
    w = start >> 6
    sh = start & 63
    v = row[w] >> np.uint64(sh)
    if sh + width > 64:
        v |= row[w + 1] << np.uint64(64 - sh)
    return v & np.uint64((1 << width) - 1)


@_jit
def permute(row: Any, tables: Any, out: Any) -> None:
    """Move the bits of one 4-word row to their permuted positions (see ``layout.Layout``):
    32 table lookups, one per hash byte, OR-ed together."""
    out[0] = out[1] = out[2] = out[3] = np.uint64(0)
    for w in range(4):
        v = row[w]
        for k in range(8):
            t = tables[8 * w + k, (v >> np.uint64(8 * k)) & np.uint64(255)]
            out[0] |= t[0]
            out[1] |= t[1]
            out[2] |= t[2]
            out[3] |= t[3]


@_jit
def permute_all(words: Any, lo: int, hi: int, tables: Any, out: Any) -> None:
    """:func:`permute` for rows ``[lo, hi)`` into ``out[0 : hi - lo]``."""
    for i in range(lo, hi):
        permute(words[i], tables, out[i - lo])


@_jit
def query_segment(
    words: Any,
    alive: Any,
    q: Any,
    r: int,
    radii: Any,
    starts: Any,
    widths: Any,
    tables: Any,
    identity: bool,
    prefix_bits: int,
    offsets: Any,
    postings: Any,
    suffixes: Any,
    masks: Any,
    mask_pop: Any,
    n_masks_for: Any,
    scratch: Any,
    bounds: Any,
    out_rows: Any,
    out_dist: Any,
    n_out: int,
) -> int:
    """Probe one segment's chunk tables for query ``q``; append hits; return the new count.

    The query is first permuted with the segment's layout (chunk keys are ranges of the
    permuted row).  Per chunk, every probed bucket's bounds are read first in a loop of
    independent loads (the CPU overlaps those cache misses), then the buckets are walked with
    the inline-suffix filter.  Candidates are verified in a separate tight loop for the same
    reason.  A row is reported once, by the first chunk on which it is within that chunk's
    probe radius, so there is no dedupe pass.  Returns ``-1`` when ``scratch`` or the output
    buffers are full (the caller grows and retries).
    """
    m = starts.shape[0]
    n_cand = 0
    cap = scratch.shape[1]
    qp = np.empty(4, dtype=np.uint64)
    if identity:
        qp[:] = q
    else:
        permute(q, tables, qp)
    for c in range(m):
        rc = radii[c]
        if rc < 0:
            continue
        width = widths[c]
        s = width - prefix_bits
        key = _chunk(qp, starts[c], width)
        qpre = key >> np.uint64(s)
        qs = key & np.uint64((1 << s) - 1)
        nm = n_masks_for[rc]
        for t in range(nm):
            bucket = qpre ^ masks[t]
            bounds[0, t] = offsets[c, bucket]
            bounds[1, t] = offsets[c, bucket + np.uint64(1)]
        for t in range(nm):
            lim = rc - mask_pop[t]
            for j in range(bounds[0, t], bounds[1, t]):
                if _popcount64(np.uint64(suffixes[c, j]) ^ qs) <= lim:
                    if n_cand >= cap:
                        return -1
                    scratch[0, n_cand] = postings[c, j]
                    scratch[1, n_cand] = c
                    n_cand += 1
    q0 = q[0]
    q1 = q[1]
    q2 = q[2]
    q3 = q[3]
    rp = np.empty(4, dtype=np.uint64)
    for i in range(n_cand):
        row = scratch[0, i]
        d = (
            _popcount64(words[row, 0] ^ q0)
            + _popcount64(words[row, 1] ^ q1)
            + _popcount64(words[row, 2] ^ q2)
            + _popcount64(words[row, 3] ^ q3)
        )
        if d > r or not alive[row]:
            continue
        c = scratch[1, i]
        if c > 0:
            if identity:
                rp[:] = words[row]
            else:
                permute(words[row], tables, rp)
        dup = False
        for c2 in range(c):
            rc2 = radii[c2]
            if rc2 >= 0:
                a = _chunk(rp, starts[c2], widths[c2])
                b = _chunk(qp, starts[c2], widths[c2])
                if _popcount64(a ^ b) <= rc2:
                    dup = True
                    break
        if dup:
            continue
        if n_out >= out_rows.shape[0]:
            return -1
        out_rows[n_out] = row
        out_dist[n_out] = d
        n_out += 1
    return n_out


@_jit
def scan_rows(
    words: Any,
    alive: Any,
    lo: int,
    hi: int,
    q: Any,
    r: int,
    out_rows: Any,
    out_dist: Any,
    n_out: int,
) -> int:
    """Brute-force rows ``[lo, hi)`` (the side buffer, or everything for radii past the
    multi-index bound); same output contract as :func:`query_segment`."""
    q0 = q[0]
    q1 = q[1]
    q2 = q[2]
    q3 = q[3]
    for row in range(lo, hi):
        d = (
            _popcount64(words[row, 0] ^ q0)
            + _popcount64(words[row, 1] ^ q1)
            + _popcount64(words[row, 2] ^ q2)
            + _popcount64(words[row, 3] ^ q3)
        )
        if d <= r and alive[row]:
            if n_out >= out_rows.shape[0]:
                return -1
            out_rows[n_out] = row
            out_dist[n_out] = d
            n_out += 1
    return n_out


@_jit
def counting_sort(prefix: Any, n_buckets: int, order: Any) -> Any:
    """Stable counting sort of ``prefix`` (values < n_buckets): fills ``order`` with the
    permutation and returns the CSR offsets (length n_buckets + 1)."""
    offsets = np.zeros(n_buckets + 1, dtype=np.uint32)
    for i in range(prefix.shape[0]):
        offsets[prefix[i] + 1] += 1
    for b in range(n_buckets):
        offsets[b + 1] += offsets[b]
    fill = offsets[:-1].copy()
    for i in range(prefix.shape[0]):
        p = prefix[i]
        order[fill[p]] = i
        fill[p] += 1
    return offsets


@_jit
def query_segment_batch(
    words: Any,
    alive: Any,
    queries: Any,
    r: int,
    radii: Any,
    starts: Any,
    widths: Any,
    tables: Any,
    identity: bool,
    prefix_bits: int,
    offsets: Any,
    postings: Any,
    suffixes: Any,
    masks: Any,
    mask_pop: Any,
    n_masks_for: Any,
    scratch: Any,
    bounds: Any,
    out_q: Any,
    out_rows: Any,
    out_dist: Any,
) -> int:
    """:func:`query_segment` over many queries in one call (no Python between queries);
    ``out_q`` gets the query number of each hit.  Returns the hit count or ``-1``."""
    n_out = 0
    for i in range(queries.shape[0]):
        got = query_segment(
            words, alive, queries[i], r, radii, starts, widths, tables, identity, prefix_bits,
            offsets, postings, suffixes, masks, mask_pop, n_masks_for, scratch, bounds,
            out_rows, out_dist, n_out,
        )  # fmt: skip
        if got < 0:
            return -1
        for k in range(n_out, got):
            out_q[k] = i
        n_out = got
    return n_out


@_jit
def scan_rows_batch(
    words: Any,
    alive: Any,
    lo: int,
    hi: int,
    queries: Any,
    r: int,
    out_q: Any,
    out_rows: Any,
    out_dist: Any,
) -> int:
    """:func:`scan_rows` over many queries in one call."""
    n_out = 0
    for i in range(queries.shape[0]):
        got = scan_rows(words, alive, lo, hi, queries[i], r, out_rows, out_dist, n_out)
        if got < 0:
            return -1
        for k in range(n_out, got):
            out_q[k] = i
        n_out = got
    return n_out
