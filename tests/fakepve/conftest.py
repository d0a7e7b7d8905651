"""Fixtures for the fake PVE tests; helpers live in ``fakepve_helpers``."""

from fakepve_helpers import fake, fake_factory  # noqa: F401
