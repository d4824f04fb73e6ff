"""Fixture plugin: broker (filled in by its owner)."""
