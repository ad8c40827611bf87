"""The auditor: verify every member's log with nothing but public keys (spec/audit.md).

Pure verification lives in :mod:`.leaves` (one chunk of leaves, run in worker processes),
:mod:`.origin` (one origin's stream folded into its tree) and :mod:`.checks` (checkpoints,
split views, references); :mod:`.sources`, :mod:`.bundle`, :mod:`.state` and :mod:`.runner` do
the I/O around them.
"""
