"""Test support shipped with the package (tests/ and bench/ share it); the engine never
imports it."""
