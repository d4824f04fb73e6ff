"""Shared fixtures: real processes on loopback (broker, simulators, PostgreSQL), no fixed ports."""

pytest_plugins = [
    "tests.plugins.broker",
    "tests.plugins.simulator",
    "tests.plugins.postgres",
]
