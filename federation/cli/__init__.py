"""The ``hashfed`` command line."""
