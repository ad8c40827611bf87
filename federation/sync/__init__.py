"""Replication between nodes: verify, pull, apply, gossip checkpoints, push doorbell.

The pure check of a fetched batch is :mod:`federation.core.replication`;
``client`` talks to one peer over RFC 9421-signed HTTP; ``replicator`` pulls each origin's log
from the origin or any mirror and applies verified batches through :mod:`federation.log.mirror`;
``notify`` handles the ``POST /v1/notify`` doorbell.  Normative text: ``spec/sync.md``.
"""
