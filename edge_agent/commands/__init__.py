"""Sub-commands of the ``edge-agent`` CLI, one module each (see :mod:`edge_agent.cli`)."""
