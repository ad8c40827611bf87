"""Compiled inner loops of the PDQ index (numba), with the flag that says whether they exist.

The probe-and-verify loop of multi-index hashing touches a few thousand buckets and candidates
per query; in numpy each step is a separate array pass with temporaries, compiled it is one
tight loop whose cache misses the CPU overlaps.  Everything here is optional: when numba is not
importable ``HAVE_NUMBA`` is False and :mod:`federation.index.pdq` uses its numpy path, which
returns exactly the same results.

Hashes are ``(n, 4)`` uint64 rows (the 32 hash bytes viewed as four native words).  A chunk is
a bit range ``[start, start + width)`` of that 256-bit row, ``width <= 32``.  Every segment owns
its rows; a local row number ``i`` is reported as the index id ``id_lo + ids_off[i]``, or
``id_lo + i`` when ``ids_off`` is empty (an open segment's ids are consecutive), and ``alive``
is the index-wide tombstone array indexed by id.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

numba: Any
_cgutils: Any
_llvm_ir: Any
try:  # pragma: no cover - exercised by whichever environment runs the tests
    import numba
    from numba.core import types as _nbtypes
    from numba.extending import intrinsic as _intrinsic

    # untyped modules, used only to emit the prefetch intrinsic
    _cgutils = importlib.import_module("numba.core.cgutils")
    _llvm_ir = importlib.import_module("llvmlite.ir")

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    numba = None
    HAVE_NUMBA = False


def _jit(fn: F) -> F:
    """``numba.njit`` (cached, GIL released so batch threads run in parallel) or identity."""
    if numba is None:  # pragma: no cover
        return fn
    return cast(F, numba.njit(cache=True, nogil=True)(fn))


def _jit_holding_gil(fn: F) -> F:
    """``numba.njit`` keeping the GIL, for calls of a few microseconds on the add path: giving
    the GIL up and taking it back costs a handoff, up to a switch interval (5 ms) while the
    maintenance worker runs Python code, which a call this short never repays."""
    if numba is None:  # pragma: no cover
        return fn
    return cast(F, numba.njit(cache=True)(getattr(fn, "py_func", fn)))


def _make_fence() -> Callable[[], None]:
    """A sequentially consistent memory fence callable from compiled code (LLVM ``fence
    seq_cst``): neither the compiler nor the CPU moves a store across it, on weakly ordered
    CPUs (ARM) too.  Without numba nothing runs compiled and a no-op stands in."""
    if numba is None:  # pragma: no cover
        return lambda: None

    @_intrinsic
    def fence(typingctx: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> None:
            builder.fence("seq_cst")

        return _nbtypes.void(), codegen

    return cast(Callable[[], None], fence)


_fence = _make_fence()


def _make_prefetch() -> Callable[[Any, Any, Any], None]:
    """``prefetch(arr, i, j)``: ask the CPU to start loading element ``[i, j]`` of the 2-D
    array ``arr`` into cache (LLVM ``llvm.prefetch``: read, keep in all levels), without waiting for
    it and without faulting on any address.  A probe knows where it will read long before it
    reads there — every bucket's run once the bucket bounds are in, every candidate's row once
    the candidates are listed — and these loads miss cache at 10M rows; issued early they
    overlap.  Without numba nothing runs compiled and a no-op stands in."""
    if numba is None:  # pragma: no cover
        return lambda arr, i, j: None

    @_intrinsic
    def prefetch(typingctx: Any, arr: Any, i: Any, j: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            index = [
                context.cast(builder, v, t, _nbtypes.intp)
                for v, t in zip(args[1:], signature.args[1:], strict=True)
            ]
            ptr = _cgutils.get_item_pointer(
                context, builder, aryty, ary, index, wraparound=False, boundscheck=False
            )
            i8p = _llvm_ir.IntType(8).as_pointer()
            i32 = _llvm_ir.IntType(32)
            fnty = _llvm_ir.FunctionType(_llvm_ir.VoidType(), [i8p, i32, i32, i32])
            # The unmangled name: LLVM renames it to its pointer type's overload when parsing.
            fn = _cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch")
            rw, locality, data = (_llvm_ir.Constant(i32, v) for v in (0, 3, 1))
            builder.call(fn, [builder.bitcast(ptr, i8p), rw, locality, data])
            return context.get_dummy_value()

        return _nbtypes.void(arr, i, j), codegen

    return cast(Callable[[Any, Any, Any], None], prefetch)


_prefetch = _make_prefetch()

PREFETCH_ROWS = 16
"""How many candidates ahead :func:`_verify` prefetches rows (8 and 16 measured alike on
pdq-like data, 16 better where candidates are many)."""


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
def _id_of(ids_off: Any, id_lo: int, row: int) -> Any:
    if ids_off.shape[0] == 0:
        return id_lo + row
    return id_lo + np.int64(ids_off[row])


FULL_OUT = -1
"""Kernel status: the output buffers are full (the caller grows them and resumes)."""

FULL_SCRATCH = -2
"""Kernel status: the candidate scratch is full (the caller grows it and resumes)."""


@_jit
def _verify(
    words: Any,
    ids_off: Any,
    id_lo: int,
    alive: Any,
    q: Any,
    qp: Any,
    r: int,
    radii: Any,
    starts: Any,
    widths: Any,
    budgets: Any,
    part_starts: Any,
    part_widths: Any,
    tables: Any,
    identity: bool,
    scratch: Any,
    n_cand: int,
    out_ids: Any,
    out_dist: Any,
    n_out: int,
) -> int:
    """Check the candidates in ``scratch`` (local row, chunk that found it) against the query;
    append the live ones within ``r`` to the output, each once: a row found by chunk ``c`` is
    skipped when an earlier probed chunk accepts it too (key within its radius and, for a
    paired chunk, key plus stored partner bits within its budget: ``layout.accepted_by``), as
    that chunk found it, so there is no dedupe pass.  Returns the new count or
    :data:`FULL_OUT`.

    Candidates are verified in their own tight loop, each row prefetched
    :data:`PREFETCH_ROWS` candidates ahead, so their cache misses overlap."""
    q0 = q[0]
    q1 = q[1]
    q2 = q[2]
    q3 = q[3]
    rp = np.empty(4, dtype=np.uint64)
    for i in range(min(n_cand, PREFETCH_ROWS)):
        _prefetch(words, scratch[0, i], 0)
    for i in range(n_cand):
        if i + PREFETCH_ROWS < n_cand:
            _prefetch(words, scratch[0, i + PREFETCH_ROWS], 0)
        row = scratch[0, i]
        d = (
            _popcount64(words[row, 0] ^ q0)
            + _popcount64(words[row, 1] ^ q1)
            + _popcount64(words[row, 2] ^ q2)
            + _popcount64(words[row, 3] ^ q3)
        )
        if d > r:
            continue
        ident = _id_of(ids_off, id_lo, row)
        if not alive[ident]:
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
                dk = _popcount64(a ^ b)
                if dk <= rc2:
                    pw2 = part_widths[c2]
                    if pw2 == 0:
                        dup = True
                        break
                    pa = _chunk(rp, part_starts[c2], pw2)
                    pb = _chunk(qp, part_starts[c2], pw2)
                    if dk + _popcount64(pa ^ pb) <= budgets[c2]:
                        dup = True
                        break
        if dup:
            continue
        if n_out >= out_ids.shape[0]:
            return FULL_OUT
        out_ids[n_out] = ident
        out_dist[n_out] = d
        n_out += 1
    return n_out


@_jit
def _inline_key(qp: Any, key: Any, s: int, part_start: int, pw: int) -> Any:
    """The inline suffix a query is compared with: the chunk key's ``s`` bits below the prefix,
    then ``pw`` partner bits (``layout.partner_ranges``)."""
    qs = (key & np.uint64((1 << s) - 1)) << np.uint64(pw)
    if pw > 0:
        qs |= _chunk(qp, part_start, pw)
    return qs


@_jit
def query_segment(
    words: Any,
    ids_off: Any,
    id_lo: int,
    alive: Any,
    q: Any,
    r: int,
    radii: Any,
    starts: Any,
    widths: Any,
    budgets: Any,
    part_starts: Any,
    part_widths: Any,
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
    out_ids: Any,
    out_dist: Any,
    n_out: int,
) -> int:
    """Probe one sealed (CSR) segment's chunk tables for query ``q``; append hits; return the
    new count, or :data:`FULL_SCRATCH` / :data:`FULL_OUT` (the caller grows that buffer and
    retries the query).

    The query is first permuted with the segment's layout (chunk keys are ranges of the
    permuted row).  Per chunk, every probed bucket's bounds are read first in a loop of
    independent loads (the CPU overlaps those cache misses), which also prefetches the start of
    each non-empty bucket's suffixes and postings, then the buckets are walked with the
    inline-suffix filter: for an entry ``x = suffix ^ qs``, its own bits ``x >> pw`` must
    be within the chunk radius less the prefix distance and all of ``x`` (own plus partner
    bits) within the chunk's budget less the prefix distance (``layout.accepted_by``; an
    unpaired chunk has ``pw = 0`` and budget = radius).
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
        pw = part_widths[c]
        qs = _inline_key(qp, key, s, part_starts[c], pw)
        shift = np.uint64(pw)
        bc = budgets[c]
        nm = n_masks_for[rc]
        for t in range(nm):
            bucket = qpre ^ masks[t]
            lo = offsets[c, bucket]
            hi = offsets[c, bucket + np.uint64(1)]
            bounds[0, t] = lo
            bounds[1, t] = hi
            if lo < hi:
                _prefetch(suffixes, c, lo)
                _prefetch(postings, c, lo)
        for t in range(nm):
            lim = rc - mask_pop[t]
            lim_b = bc - mask_pop[t]
            for j in range(bounds[0, t], bounds[1, t]):
                x = np.uint64(suffixes[c, j]) ^ qs
                if _popcount64(x >> shift) <= lim and _popcount64(x) <= lim_b:
                    if n_cand >= cap:
                        return FULL_SCRATCH
                    scratch[0, n_cand] = postings[c, j]
                    scratch[1, n_cand] = c
                    n_cand += 1
    return _verify(
        words, ids_off, id_lo, alive, q, qp, r, radii, starts, widths, budgets, part_starts,
        part_widths, tables, identity, scratch, n_cand, out_ids, out_dist, n_out,
    )  # fmt: skip


@_jit
def query_open(
    words: Any,
    id_lo: int,
    alive: Any,
    n_vis: int,
    q: Any,
    r: int,
    radii: Any,
    starts: Any,
    widths: Any,
    budgets: Any,
    part_starts: Any,
    part_widths: Any,
    tables: Any,
    identity: bool,
    prefix_bits: int,
    head: Any,
    link: Any,
    masks: Any,
    mask_pop: Any,
    n_masks_for: Any,
    scratch: Any,
    bounds: Any,
    out_ids: Any,
    out_dist: Any,
    n_out: int,
) -> int:
    """:func:`query_segment` for an open segment, whose buckets are chains: ``head[c, b]`` is
    1 + the newest local row in bucket ``b`` of chunk ``c`` (0: empty) and ``link[c, row]``
    holds that row's inline suffix (own bits below the prefix, then partner bits) in its high
    32 bits and 1 + the next older row of the bucket in its low 32 bits.  Rows at or past
    ``n_vis`` were added after the caller's snapshot: they are walked through (their links are
    complete, see :func:`open_append`) but not reported.

    A chain step is a load that depends on the previous one, so every link is prefetched as
    soon as its row is known (when its head or predecessor is read), and the next chunk's
    heads while this chunk's chains are walked (1.25M open rows of 10M-like data: 2x faster)."""
    m = starts.shape[0]
    n_cand = 0
    cap = scratch.shape[1]
    qp = np.empty(4, dtype=np.uint64)
    if identity:
        qp[:] = q
    else:
        permute(q, tables, qp)
    low32 = np.uint64(0xFFFFFFFF)
    for c in range(m):
        if c + 1 < m and radii[c + 1] >= 0:  # the next chunk's heads, while this one walks
            w1 = widths[c + 1]
            nxt = _chunk(qp, starts[c + 1], w1) >> np.uint64(w1 - prefix_bits)
            for t in range(n_masks_for[radii[c + 1]]):
                _prefetch(head, c + 1, nxt ^ masks[t])
        rc = radii[c]
        if rc < 0:
            continue
        width = widths[c]
        s = width - prefix_bits
        key = _chunk(qp, starts[c], width)
        qpre = key >> np.uint64(s)
        pw = part_widths[c]
        qs = _inline_key(qp, key, s, part_starts[c], pw)
        shift = np.uint64(pw)
        bc = budgets[c]
        nm = n_masks_for[rc]
        # All probed chains advance one step per round: the loads of a round are
        # independent, so their cache misses overlap (chains are short, a few rounds).
        active = 0
        for t in range(nm):
            j = head[c, qpre ^ masks[t]]
            if j != 0:
                _prefetch(link, c, j - 1)
                bounds[0, active] = j
                bounds[1, active] = t
                active += 1
        while active:
            kept = 0
            for a in range(active):
                row = bounds[0, a] - 1
                t = bounds[1, a]
                e = link[c, row]
                x = (e >> np.uint64(32)) ^ qs
                if (
                    row < n_vis
                    and _popcount64(x >> shift) <= rc - mask_pop[t]
                    and _popcount64(x) <= bc - mask_pop[t]
                ):
                    if n_cand >= cap:
                        return FULL_SCRATCH
                    scratch[0, n_cand] = row
                    scratch[1, n_cand] = c
                    n_cand += 1
                j = np.int64(e & low32)
                if j != 0:
                    _prefetch(link, c, j - 1)
                    bounds[0, kept] = j
                    bounds[1, kept] = t
                    kept += 1
            active = kept
    empty = np.empty(0, dtype=np.uint32)
    return _verify(
        words, empty, id_lo, alive, q, qp, r, radii, starts, widths, budgets, part_starts,
        part_widths, tables, identity, scratch, n_cand, out_ids, out_dist, n_out,
    )  # fmt: skip


@_jit
def open_append(
    perm: Any, base: int, starts: Any, widths: Any, part_starts: Any, part_widths: Any,
    prefix_bits: int, head: Any, link: Any, buckets: Any,
) -> None:  # fmt: skip
    """Link rows ``base .. base + len(perm)`` (already stored, ``perm`` their permuted words)
    into an open segment's chains; a link's high 32 bits are the row's inline suffix (its own
    chunk bits below the prefix, then ``part_widths[c]`` partner bits, as in a sealed segment).

    Readers walk chains without a lock while this runs, so a head must never point at a row
    whose link is not written yet.  Hence two passes with a fence between them: first every
    new row's link (its suffix and the next older row of its bucket: the current head, or an
    earlier row of the same batch), with ``head`` only read; then the heads move to the newest
    new row of each bucket.  A reader sees either the old head or a new row whose link is
    complete, and every chain stays intact at every instant.
    """
    k = perm.shape[0]
    sufs = np.empty(k, dtype=np.uint64)
    for c in range(starts.shape[0]):
        width = widths[c]
        s = width - prefix_bits
        for i in range(k):
            key = _chunk(perm[i], starts[c], width)
            buckets[c, i] = np.int64(key >> np.uint64(s))
            sufs[i] = _inline_key(perm[i], key, s, part_starts[c], part_widths[c])
        order = np.argsort(buckets[c], kind="mergesort")
        for x in range(k):
            i = order[x]
            b = buckets[c, i]
            if x > 0 and buckets[c, order[x - 1]] == b:
                prev = np.uint64(base + order[x - 1] + 1)
            else:
                prev = np.uint64(head[c, b])
            link[c, base + i] = (sufs[i] << np.uint64(32)) | prev
    _fence()
    for c in range(starts.shape[0]):
        for i in range(k):
            head[c, buckets[c, i]] = np.uint32(base + i + 1)


open_append_small = _jit_holding_gil(open_append)
""":func:`open_append` for a few rows (single adds)."""

permute_all_small = _jit_holding_gil(permute_all)
""":func:`permute_all` for a few rows (single adds)."""


@_jit
def scan_rows(
    words: Any,
    ids_off: Any,
    id_lo: int,
    alive: Any,
    hi: int,
    q: Any,
    r: int,
    out_ids: Any,
    out_dist: Any,
    n_out: int,
) -> int:
    """Brute-force local rows ``[0, hi)`` (radii past a layout's multi-index bound); same
    output contract as :func:`query_segment`."""
    q0 = q[0]
    q1 = q[1]
    q2 = q[2]
    q3 = q[3]
    for row in range(hi):
        d = (
            _popcount64(words[row, 0] ^ q0)
            + _popcount64(words[row, 1] ^ q1)
            + _popcount64(words[row, 2] ^ q2)
            + _popcount64(words[row, 3] ^ q3)
        )
        if d <= r:
            ident = _id_of(ids_off, id_lo, row)
            if alive[ident]:
                if n_out >= out_ids.shape[0]:
                    return -1
                out_ids[n_out] = ident
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
    ids_off: Any,
    id_lo: int,
    alive: Any,
    queries: Any,
    r: int,
    radii: Any,
    starts: Any,
    widths: Any,
    budgets: Any,
    part_starts: Any,
    part_widths: Any,
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
    out_ids: Any,
    out_dist: Any,
    state: Any,
) -> int:
    """:func:`query_segment` over queries ``state[0]..`` in one call (no Python between
    queries), appending after the ``state[1]`` hits already in the output; ``out_q`` gets the
    query number of each hit.  Returns 0 when all are done, or the status of the query that
    did not fit, with ``state`` = (that query, hits before it): the caller grows the buffer
    and calls again, resuming there."""
    n_out = state[1]
    for i in range(state[0], queries.shape[0]):
        got = query_segment(
            words, ids_off, id_lo, alive, queries[i], r, radii, starts, widths, budgets,
            part_starts, part_widths, tables, identity, prefix_bits, offsets, postings,
            suffixes, masks, mask_pop, n_masks_for, scratch, bounds, out_ids, out_dist, n_out,
        )  # fmt: skip
        if got < 0:
            state[0] = i
            state[1] = n_out
            return got
        for k in range(n_out, got):
            out_q[k] = i
        n_out = got
    state[0] = queries.shape[0]
    state[1] = n_out
    return 0


@_jit
def query_open_batch(
    words: Any,
    id_lo: int,
    alive: Any,
    n_vis: int,
    queries: Any,
    r: int,
    radii: Any,
    starts: Any,
    widths: Any,
    budgets: Any,
    part_starts: Any,
    part_widths: Any,
    tables: Any,
    identity: bool,
    prefix_bits: int,
    head: Any,
    link: Any,
    masks: Any,
    mask_pop: Any,
    n_masks_for: Any,
    scratch: Any,
    bounds: Any,
    out_q: Any,
    out_ids: Any,
    out_dist: Any,
    state: Any,
) -> int:
    """:func:`query_open` over many queries in one call (``state`` as for
    :func:`query_segment_batch`)."""
    n_out = state[1]
    for i in range(state[0], queries.shape[0]):
        got = query_open(
            words, id_lo, alive, n_vis, queries[i], r, radii, starts, widths, budgets,
            part_starts, part_widths, tables, identity, prefix_bits, head, link, masks,
            mask_pop, n_masks_for, scratch, bounds, out_ids, out_dist, n_out,
        )  # fmt: skip
        if got < 0:
            state[0] = i
            state[1] = n_out
            return got
        for k in range(n_out, got):
            out_q[k] = i
        n_out = got
    state[0] = queries.shape[0]
    state[1] = n_out
    return 0


@_jit
def scan_rows_batch(
    words: Any,
    ids_off: Any,
    id_lo: int,
    alive: Any,
    hi: int,
    queries: Any,
    r: int,
    out_q: Any,
    out_ids: Any,
    out_dist: Any,
    state: Any,
) -> int:
    """:func:`scan_rows` over many queries in one call (``state`` as for
    :func:`query_segment_batch`)."""
    n_out = state[1]
    for i in range(state[0], queries.shape[0]):
        got = scan_rows(words, ids_off, id_lo, alive, hi, queries[i], r, out_ids, out_dist, n_out)
        if got < 0:
            state[0] = i
            state[1] = n_out
            return got
        for k in range(n_out, got):
            out_q[k] = i
        n_out = got
    state[0] = queries.shape[0]
    state[1] = n_out
    return 0


@_jit
def greedy_chunks(diffs_t: Any, widths: Any, max_level: int, picked: Any) -> None:
    """The greedy bit allocation of ``tuning.correlated_layout``, compiled and without the GIL
    (it runs on the maintenance worker, beside adds): ``diffs_t[b, p]`` is True where sample
    pair ``p`` differs on bit ``b``; ``picked[c, :widths[c]]`` receives chunk ``c``'s bits in
    pick order.  Same picks as the numpy version, bit for bit: every weight is a power of two
    ``2**-d`` (``d <= max_level + 1``) and every sum of them stays below ``2**13`` pairs, so
    all the float arithmetic is exact and the order of additions cannot matter."""
    n_bits, n_pairs = diffs_t.shape
    n_words = (n_pairs + 63) >> 6
    by_bit = np.zeros((n_bits, n_words), dtype=np.uint64)
    for b in range(n_bits):
        for p in range(n_pairs):
            if diffs_t[b, p]:
                by_bit[b, p >> 6] |= np.uint64(1) << np.uint64(p & 63)
    n_chunks = widths.shape[0]
    scale = np.empty(max_level + 2, dtype=np.float64)
    scale[0] = 1.0
    for d in range(1, max_level + 2):
        scale[d] = scale[d - 1] * 0.5
    level = np.zeros((n_chunks, n_pairs), dtype=np.int8)
    gain = np.empty((n_chunks, n_bits), dtype=np.float64)
    for b in range(n_bits):
        n_diff = 0
        for w in range(n_words):
            n_diff += _popcount64(by_bit[b, w])
        for c in range(n_chunks):
            gain[c, b] = np.float64(n_diff)
    left = np.full(n_chunks, np.float64(n_pairs))
    free = np.ones(n_bits, dtype=np.bool_)
    count = np.zeros(n_chunks, dtype=np.int64)
    packed = np.zeros((max_level, n_words), dtype=np.uint64)
    for _ in range(n_bits):
        # The chunk with the most weight left (ties: the first), then its best free bit
        # (ties: the lowest), as max() and np.argmax pick them.
        c = -1
        for k in range(n_chunks):
            if count[k] < widths[k] and (c < 0 or left[k] > left[c]):
                c = k
        bit = -1
        for b in range(n_bits):
            if free[b] and (bit < 0 or gain[c, b] > gain[c, bit]):
                bit = b
        picked[c, count[c]] = bit
        count[c] += 1
        free[bit] = False
        lo = max_level
        hi = -1
        for p in range(n_pairs):
            if diffs_t[bit, p]:
                d = int(level[c, p])
                if d < max_level:
                    packed[d, p >> 6] |= np.uint64(1) << np.uint64(p & 63)
                    lo = min(lo, d)
                    hi = max(hi, d)
                    level[c, p] = d + 1
                    left[c] -= scale[d + 1]
        for d in range(lo, hi + 1):
            for b in range(n_bits):
                common = 0
                for w in range(n_words):
                    common += _popcount64(by_bit[b, w] & packed[d, w])
                gain[c, b] -= common * scale[d + 1]
            for w in range(n_words):
                packed[d, w] = np.uint64(0)


@_jit
def count_work(
    keys: Any, part: Any, qkeys: Any, qpart: Any, rc: int, budget: int, shift: int, paired: bool
) -> Any:
    """One chunk's share of ``tuning.query_work``: over every (query, sample row) pair, the
    bucket entries the probe scans (key distance above ``shift`` within ``rc``) and the
    candidates it passes on (key distance within ``rc`` and, ``paired``, key plus partner
    distance within ``budget``), each minus the query's own row.  Compiled so the tuning that
    runs on the maintenance worker does not hold the GIL."""
    cand = 0
    entries = 0
    sh = np.uint64(shift)
    for i in range(qkeys.shape[0]):
        q = qkeys[i]
        qp = qpart[i]
        for j in range(keys.shape[0]):
            x = keys[j] ^ q
            if _popcount64(x >> sh) <= rc:
                entries += 1
            dist = _popcount64(x)
            if dist <= rc and (not paired or dist + _popcount64(part[j] ^ qp) <= budget):
                cand += 1
        cand -= 1
        entries -= 1
    return cand, entries
