"""``python -m federation`` runs the ``hashfed`` command."""

import sys

from federation.cli.main import main

sys.exit(main())
