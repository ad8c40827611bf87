"""Logs in storage: the node's own log (one writer) and the mirrored logs of other members.

``tree`` bridges the pure stored-hash Merkle functions of :mod:`federation.core.tlog` to the
database; ``writer`` appends to our own log (entries, tree hashes and the new signed
checkpoint in one transaction); ``reader`` serves checkpoints, entries and proofs of any log.
"""
