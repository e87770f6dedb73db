"""Placeholder: routes are added here."""

from server.api import api  # noqa: F401
