"""The node's match service: the in-memory index kept current from storage and new entries.

:class:`~federation.matching.service.MatchService` loads every stored submission at start,
applies retractions (tombstones) and opinions (aggregate status), and then follows the log as
entries arrive.  It also holds the member's own *local content* hashes (never shared) and
records an alert when a newly arriving submission matches one (ARCHITECTURE §10).
"""
