"""Fixtures of the end-to-end tests (``harness``)."""

from tests.e2e.harness import e2e  # noqa: F401
