"""The node's aiohttp server: routes, request authentication, roles, error mapping, metrics.

Only this layer speaks HTTP to peers and clients; it builds on ``federation.core`` (pure) and
the storage, log and index layers below it.
"""
