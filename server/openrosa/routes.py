"""Placeholder: OpenRosa routes are added here."""

from server.openrosa import openrosa  # noqa: F401
