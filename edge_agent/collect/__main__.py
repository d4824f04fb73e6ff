"""``python -m edge_agent.collect`` runs the ``edge-agent-collect`` command line."""

from edge_agent.collect.cli import main

raise SystemExit(main())
