"""edge-agent: machine data at the edge, with numbers both parties can trust.

The package holds the core pipeline (config, runtime, buffer, calculator,
uplink, CLI). Protocol drivers live in the top-level ``drivers`` package and
the bundled PLC simulators in ``simulators``; the runtime never imports the
simulators.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
