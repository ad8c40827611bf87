"""Replication between nodes: verify, pull, apply, gossip checkpoints, push doorbell.

``verify`` is the pure check of a fetched batch (what a node MUST verify before applying);
``client`` talks to one peer over RFC 9421-signed HTTP; ``replicator`` pulls each origin's log
from the origin or any mirror and applies verified batches through :mod:`federation.log.mirror`;
``notify`` handles the ``POST /v1/notify`` doorbell.  Normative text: ``spec/sync-section.md``.
"""
