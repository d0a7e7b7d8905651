"""Fixtures for the adapter tests; the helpers live in ``pve_fake`` (importable by name,
unlike a conftest module)."""

from pve_fake import fake_pve, fake_time  # noqa: F401
