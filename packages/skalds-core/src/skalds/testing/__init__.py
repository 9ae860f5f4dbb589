"""Test helpers for projects that use Skalds; also a pytest plugin (fixtures)."""
