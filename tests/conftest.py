"""Shared fixtures: real processes on loopback (broker, simulators), never fixed ports."""

pytest_plugins = [
    "tests.plugins.broker",
    "tests.plugins.simulator",
]
