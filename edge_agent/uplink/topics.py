"""MQTT topic templates: validated once at config load, rendered per message.

A template is a ``str.format`` pattern over a closed set of placeholders per
message kind (``{prefix}``, ``{site}``, ``{agent}`` everywhere; ``{machine}`` and
``{window_kind}`` for KPI records; ``{machine}`` for stop events; ``{device}`` and
``{tag}`` for telemetry; ``{contract}`` for contract messages).
:func:`check_template` reports unknown placeholders, format specs and the wildcards
``+``/``#`` (a publish topic must not contain them), so a typo fails ``check-config``
instead of producing an unroutable topic at 3 a.m. Rendering refuses values that
would change the topic structure (``/``, ``+``, ``#``, empty). Pure code, no I/O.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

COMMON = frozenset({"prefix", "site", "agent"})

# Placeholders each kind may use (besides COMMON).
KIND_FIELDS: Mapping[str, frozenset[str]] = {
    "kpi": frozenset({"machine", "window_kind"}),
    "stop": frozenset({"machine"}),
    "health": frozenset(),
    "telemetry": frozenset({"device", "tag"}),
    "status": frozenset(),
    "gap": frozenset(),
    "config": frozenset(),
    "key": frozenset(),
    "contract": frozenset({"contract"}),
    "contract_alert": frozenset({"contract"}),
    "contract_period": frozenset({"contract"}),
    "command": frozenset(),
}

DEFAULT_PREFIX = "edge/{site}/{agent}"
DEFAULT_TEMPLATES: Mapping[str, str] = {
    "kpi": "{prefix}/{machine}/kpi/{window_kind}",
    "stop": "{prefix}/{machine}/stop",
    "health": "{prefix}/health",
    "telemetry": "{prefix}/telemetry/{device}",
    "status": "{prefix}/status",
    "gap": "{prefix}/gap",
    "config": "{prefix}/config",
    "key": "{prefix}/key",
    "contract": "{prefix}/contract/{contract}/status",
    "contract_alert": "{prefix}/contract/{contract}/alert",
    "contract_period": "{prefix}/contract/{contract}/period",
    "command": "{prefix}/command",
}


def template_fields(template: str) -> list[str]:
    """Placeholder names used by a template (raises ValueError on malformed braces)."""
    names: list[str] = []
    for _literal, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} must not have a format spec or conversion")
        names.append(name)
    return names


def check_template(template: str, allowed: frozenset[str]) -> str | None:
    """Why ``template`` is invalid for the ``allowed`` placeholders, or None when it is fine."""
    if not template:
        return "must not be empty"
    if "+" in template or "#" in template:
        return "must not contain the MQTT wildcards '+' or '#'"
    if template.startswith("$"):
        return "must not start with '$' (reserved for broker topics)"
    if "\x00" in template:
        return "must not contain NUL"
    try:
        names = template_fields(template)
    except ValueError as exc:
        return f"invalid template: {exc}"
    unknown = sorted({n for n in names if n not in allowed})
    if unknown:
        listed = ", ".join(f"{{{n}}}" for n in sorted(allowed))
        return (
            f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; allowed: {listed}"
        )
    return None


def _check_value(name: str, value: str) -> str:
    if not value or any(c in value for c in "/+#\x00"):
        raise ValueError(f"topic value {name}={value!r} must be non-empty without '/', '+', '#'")
    return value


@dataclass(frozen=True, slots=True)
class TopicTemplates:
    """Renders the topics of one agent. Build with :meth:`create` from validated templates."""

    prefix: str
    templates: Mapping[str, str]
    site: str
    agent: str

    @classmethod
    def create(
        cls,
        *,
        site: str,
        agent: str,
        prefix_template: str = DEFAULT_PREFIX,
        templates: Mapping[str, str] | None = None,
    ) -> TopicTemplates:
        """Resolve the prefix for this agent and keep the per-kind templates."""
        merged = dict(DEFAULT_TEMPLATES)
        merged.update(templates or {})
        for kind, template in merged.items():
            problem = check_template(template, COMMON | KIND_FIELDS.get(kind, frozenset()))
            if problem:
                raise ValueError(f"topic template {kind!r}: {problem}")
        problem = check_template(prefix_template, frozenset({"site", "agent"}))
        if problem:
            raise ValueError(f"topic prefix: {problem}")
        values = {"site": _check_value("site", site), "agent": _check_value("agent", agent)}
        prefix = prefix_template.format_map(values)
        return cls(prefix=prefix, templates=merged, site=site, agent=agent)

    def render(self, kind: str, **values: str) -> str:
        """Topic for ``kind`` with the given placeholder values (extra values are ignored)."""
        template = self.templates[kind]
        context = {"prefix": self.prefix, "site": self.site, "agent": self.agent}
        for name in template_fields(template):
            if name not in context:
                if name not in values:
                    raise ValueError(f"topic template {kind!r} needs {{{name}}}")
                context[name] = _check_value(name, values[name])
        return template.format_map(context)

    def kpi(self, *, machine: str, window_kind: str) -> str:
        """Topic of a KPI record."""
        return self.render("kpi", machine=machine, window_kind=window_kind)

    def stop(self, *, machine: str) -> str:
        """Topic of a stop event."""
        return self.render("stop", machine=machine)

    def health(self) -> str:
        """Topic of health telemetry."""
        return self.render("health")

    def telemetry(self, *, device: str, tag: str = "") -> str:
        """Topic of raw telemetry for a device (``{tag}`` only if the template uses it)."""
        return self.render("telemetry", device=device, tag=tag)

    def status(self) -> str:
        """Topic of the retained birth / last-will status message."""
        return self.render("status")

    def contract(self, kind: str, *, contract: str) -> str:
        """Topic of a contract's status, alert or period record (``kind`` is the message kind)."""
        return self.render(kind, contract=contract)

    def command(self) -> str:
        """Topic the agent subscribes to for commands (acknowledgements)."""
        return self.render("command")

    def gap(self) -> str:
        """Topic of gap reports (messages lost with a damaged or missing database)."""
        return self.render("gap")

    def config(self) -> str:
        """Topic of configuration audit records (evidence)."""
        return self.render("config")

    def key(self) -> str:
        """Topic of device key records: chain start and key rotation (evidence)."""
        return self.render("key")
