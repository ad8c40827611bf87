"""Outbound HTTP: signing requests this node (or a member's CLI) sends to a node.

Every request is authenticated with RFC 9421 HTTP Message Signatures as profiled in
``spec/auth.md``; see :mod:`federation.client.signer`.
"""
