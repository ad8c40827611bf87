"""hashfed: a federation server for sharing hashes of confirmed abuse images, never the images.

Layers (dependencies point down only): ``cli`` → ``server``/``sync``/``audit`` → ``log``/``index``
→ ``store`` → ``core``.  ``core`` is pure and synchronous.
"""

__version__ = "0.1.0"
