"""Fixture plugin: simulator (filled in by its owner)."""
