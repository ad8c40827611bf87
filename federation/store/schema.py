"""Table definitions (SQLAlchemy Core).  Migrations in ``migrations/versions`` create them.

One set of tables serves the node's own log and every log it mirrors, keyed by ``origin``
(the log origin line), so relaying another member's log is the same code path as serving ours.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Latest verified (for mirrors) or signed (for our own log) state of each log.
logs = Table(
    "logs",
    metadata,
    Column("origin", String(255), primary_key=True),
    Column("member_id", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("checkpoint", Text, nullable=False, doc="signed note text of the checkpoint at size"),
    Column("updated_at", BigInteger, nullable=False),
    Column("frozen", Boolean, nullable=False, default=False),
    Column("frozen_reason", Text, nullable=True),
)

# A mirrored log caught up in chunks (spec/sync.md §3.1): leaves [0, size) are stored and proven
# a prefix of the signed checkpoint ``target_note``, but no signed note of exactly ``size`` is
# held yet.  ``logs`` keeps serving the last signed state; the row goes once a batch completes.
mirror_progress = Table(
    "mirror_progress",
    metadata,
    Column("origin", String(255), primary_key=True),
    Column("member_id", String(64), nullable=False),
    Column("size", BigInteger, nullable=False, doc="leaves stored and verified"),
    Column("root", LargeBinary(32), nullable=False, doc="root of those leaves (computed)"),
    Column("target_note", Text, nullable=False, doc="signed checkpoint they are proven against"),
    Column("updated_at", BigInteger, nullable=False),
)

# Stored perfect-subtree hashes (see federation.core.merkle.stored_hash_index), per log.
tree_hashes = Table(
    "tree_hashes",
    metadata,
    Column("origin", String(255), primary_key=True),
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

# Every accepted checkpoint, so receipts and consistency proofs can be re-served.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("origin", String(255), primary_key=True),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("received_at", BigInteger, nullable=False),
)

# Leaves of every log.  The denormalised columns exist for the match index and queries; the
# leaf bytes stay the only source of truth (they are what the origin signed).
entries = Table(
    "entries",
    metadata,
    Column("origin", String(255), primary_key=True),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("member_id", String(64), nullable=False),
    Column("entry_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("leaf", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("signal_kind", String(8), nullable=True),
    Column("signal_value", String(64), nullable=True),
    Column("labels", Text, nullable=True),
    Column("target_origin", String(255), nullable=True),
    Column("target_index", BigInteger, nullable=True),
    Column("verdict", String(32), nullable=True),
    UniqueConstraint("origin", "entry_id", name="uq_entries_origin_entry_id"),
)
Index("ix_entries_signal", entries.c.signal_kind, entries.c.signal_value)
Index("ix_entries_target", entries.c.target_origin, entries.c.target_index)

# Two validly signed, inconsistent checkpoints of one origin: kept raw, forever.
evidence = Table(
    "evidence",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("origin", String(255), nullable=False),
    Column("note_a", Text, nullable=False),
    Column("note_b", Text, nullable=False),
    Column("proof", Text, nullable=True, doc="JSON: the consistency proof that failed, if any"),
    Column("reason", Text, nullable=False),
    Column("source", String(64), nullable=True, doc="member id of the peer that served note_b"),
    Column("detected_at", BigInteger, nullable=False),
)

# Per-peer replication health, shown in /v1/status.
peers = Table(
    "peers",
    metadata,
    Column("member_id", String(64), primary_key=True),
    Column("last_success", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", BigInteger, nullable=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("backoff_until", BigInteger, nullable=False, default=0),
)

# Membership manifests accepted over time (the newest is in force).
manifests = Table(
    "manifests",
    metadata,
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("document", Text, nullable=False),
    Column("accepted_at", BigInteger, nullable=False),
)

# A platform's own content hashes for retroactive alerts: local only, never shared.
local_content = Table(
    "local_content",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ref", String(256), nullable=False, doc="the platform's own opaque content id"),
    Column("signal_kind", String(8), nullable=False),
    Column("signal_value", String(64), nullable=False),
    Column("created", BigInteger, nullable=False),
    UniqueConstraint("ref", "signal_kind", "signal_value", name="uq_local_content"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("local_id", Integer, nullable=False),
    Column("origin", String(255), nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("distance", Integer, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("delivered_at", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", BigInteger, nullable=False, default=0),
    UniqueConstraint("local_id", "origin", "idx", name="uq_alerts"),
    ForeignKeyConstraint(["local_id"], ["local_content.id"], ondelete="CASCADE"),
)

# Witness state (C2SP tlog-witness): the latest checkpoint cosigned per origin.
witness_state = Table(
    "witness_state",
    metadata,
    Column("origin", String(255), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
