"""``python -m preflight`` runs the command line."""

import sys

from preflight.cli import main

sys.exit(main())
