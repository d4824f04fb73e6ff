"""``edge-agent check-config FILE``: validate a configuration without starting anything.

Prints every problem at once (file, key path, expectation) and exits 2, or
prints a summary of what would run and exits 0. ``--plan`` adds the request
plan of each driver (Modbus block reads per device and cycle); ``--probe``
connects to every configured device and test-reads every tag once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from typing import Any

from drivers import registry
from edge_agent.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from edge_agent.config import AgentConfig, load_config
from edge_agent.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check-config`` sub-command."""
    p = sub.add_parser(
        "check-config",
        help="validate a configuration file",
        description="Validate configuration files as a whole; report every problem at once.",
        epilog="Exit codes: 0 valid, 2 invalid, 1 a probed tag failed.\n"
        "Examples:\n  edge-agent check-config /etc/edge-agent/agent.toml\n"
        "  edge-agent check-config --plan agent.toml\n  edge-agent check-config --probe agent.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="agent TOML file(s)")
    p.add_argument("--plan", action="store_true", help="print the request plan per device")
    p.add_argument(
        "--probe", action="store_true", help="connect to every device and read every tag once"
    )
    p.set_defaults(func=_check)


def summary(config: AgentConfig) -> str:
    """A short human summary of what the configuration would run."""
    lines = [
        f"agent {config.agent.id} at site {config.agent.site}; state in {config.agent.state_dir}",
        f"mqtt {config.mqtt.summary()}" if hasattr(config.mqtt, "summary") else "mqtt configured",
    ]
    by_proto: dict[str, list[str]] = defaultdict(list)
    for name, dev in config.devices.items():
        by_proto[dev.protocol].append(f"{name} ({len(dev.tag_names)} tags)")
    for proto, devs in sorted(by_proto.items()):
        lines.append(f"{proto}: {', '.join(devs)}")
    for name, m in config.machines.items():
        lines.append(
            f"machine {name}: reads {', '.join(m.refs)}; ideal cycle {m.kpi.ideal_cycle_time_s} s"
        )
    lines.extend(c.describe() for c in config.contracts.values())
    lines.append(
        f"reporting windows: {', '.join(config.reporting.windows)}"
        f" every {config.reporting.interval_s:g} s"
    )
    return "\n".join(lines)


def _plan(config: AgentConfig) -> str:
    specs = registry()
    out: list[str] = []
    by_proto: dict[str, list[Any]] = defaultdict(list)
    for dev in config.devices.values():
        by_proto[dev.protocol].append(dev)
    for proto, devs in sorted(by_proto.items()):
        describe = specs[proto].describe_plan
        if describe is not None:
            out.append(describe(devs))
    return "\n".join(out)


def _check(args: argparse.Namespace) -> int:
    worst = EXIT_OK
    for file in args.files:
        try:
            config = load_config(file)
        except ConfigError as exc:
            print(f"{file}: INVALID, {len(exc.issues)} problem(s):", file=sys.stderr)
            for issue in exc.issues:
                print(f"  {issue}", file=sys.stderr)
            worst = EXIT_CONFIG
            continue
        print(f"{file}: OK")
        print(summary(config))
        if args.plan:
            print(_plan(config))
        if args.probe:
            from edge_agent.probe import probe_all

            ok = asyncio.run(probe_all(config))
            if not ok and worst == EXIT_OK:
                worst = EXIT_FAILURE
    return worst
