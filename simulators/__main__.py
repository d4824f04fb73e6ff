"""``python -m simulators`` runs the ``edge-agent-sim`` command line."""

import sys

from simulators.cli import main

sys.exit(main())
