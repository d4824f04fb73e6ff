"""``edge-agent check-config FILE``: would the agent start with this file, on this machine?

Two stages, both reported in full: the file itself (every problem at once:
file, key path, expectation; :func:`edge_agent.config.load_config`), then
what it needs from this machine (:func:`edge_agent.preflight.preflight`:
files readable, variables set, state directory writable, hosts valid,
placeholder addresses). Errors exit 2; warnings are printed and exit 0, or 2
with ``--strict``. ``--no-environment`` skips the machine checks, to validate
a file meant for another gateway. Otherwise it prints a summary of what would
run. ``--plan`` adds the request plan of each driver (Modbus block reads per
device and cycle); ``--probe`` connects to every configured device and
test-reads every tag once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from edge_agent.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, add_config_argument, config_paths
from edge_agent.errors import ConfigError

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig
    from edge_agent.kpi import KpiProfile


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check-config`` sub-command."""
    p = sub.add_parser(
        "check-config",
        help="validate a configuration file",
        description="Check that the agent would start with this configuration on this machine: "
        "the file as a whole (every problem at once), then files, variables, directories and "
        "addresses it needs. Placeholder addresses from the example are warnings.",
        epilog="Exit codes: 0 valid (warnings allowed), 2 invalid (or warnings with --strict),\n"
        "1 a probed tag failed.\n"
        "Examples:\n  edge-agent check-config                  # /etc/edge-agent/agent.toml\n"
        "  edge-agent check-config agent.toml --strict\n"
        "  edge-agent check-config --plan agent.toml\n"
        "  edge-agent check-config --probe agent.toml\n"
        "  edge-agent check-config --no-environment other-gateway.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_argument(
        p, many=True, help_text="agent TOML file(s) (default /etc/edge-agent/agent.toml)"
    )
    p.add_argument(
        "--strict", action="store_true", help="treat warnings (placeholder addresses ...) as errors"
    )
    p.add_argument(
        "--no-environment",
        action="store_true",
        help="check the file only, not this machine (files, variables, directories)",
    )
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
        lines.append(f"  calendar: {_calendar(m.kpi)}")
    lines.extend(c.describe() for c in config.contracts.values())
    lines.append(
        f"reporting windows: {', '.join(config.reporting.windows)}"
        f" every {config.reporting.interval_s:g} s"
    )
    shiftless = [n for n, m in config.machines.items() if not m.kpi.shifts]
    if "shift" in config.reporting.windows and shiftless:
        lines.append(f"  no shift windows for {', '.join(shiftless)} (no shifts configured)")
    return "\n".join(lines)


def _calendar(profile: KpiProfile) -> str:
    """The machine's planned time in words, with what it means for its KPIs."""
    text = f"{profile.calendar}, zone {profile.timezone}"
    if profile.always_planned:
        return text + "; every record has the flag calendar_24_7"
    if not profile.shifts and not profile.planned_windows:
        return text + "; every KPI is null (flag no_planned_time)"
    return text


def _plan(config: AgentConfig) -> str:
    from drivers import registry

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
    # Imported here, not at the top: every command's parser is built at start, and
    # `edge-agent verify` on a customer's laptop needs neither the drivers nor the config.
    from edge_agent.config import load_config
    from edge_agent.preflight import preflight

    worst = EXIT_OK
    for file in config_paths(args):
        try:
            config = load_config(file)
        except ConfigError as exc:
            print(f"{file}: INVALID, {len(exc.issues)} problem(s):", file=sys.stderr)
            for issue in exc.issues:
                print(f"  {issue}", file=sys.stderr)
            worst = EXIT_CONFIG
            continue
        findings = preflight(config, environment=not args.no_environment)
        errors = [f for f in findings if f.level == "error" or args.strict]
        warnings = [f for f in findings if f not in errors]
        if errors:
            what = "would not start" if any(f.level == "error" for f in errors) else "--strict"
            print(f"{file}: INVALID ({what}), {len(errors)} problem(s):", file=sys.stderr)
            for finding in errors:
                print(f"  {file}: {finding}", file=sys.stderr)
            worst = EXIT_CONFIG
        for finding in warnings:
            print(f"{file}: warning: {finding}", file=sys.stderr)
        if errors:
            continue
        print(f"{file}: OK" + (f" ({len(warnings)} warning(s))" if warnings else ""))
        print(summary(config))
        if args.plan:
            print(_plan(config))
        if args.probe:
            from edge_agent.probe import probe_all

            ok = asyncio.run(probe_all(config))
            if not ok and worst == EXIT_OK:
                worst = EXIT_FAILURE
    return worst
