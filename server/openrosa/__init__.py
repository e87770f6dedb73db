"""OpenRosa endpoints for unmodified ODK Collect: form list, form, manifest, media, submission."""

from flask import Blueprint

# Errors on these routes render as OpenRosaResponse XML (server/errors.py).
openrosa = Blueprint("openrosa", __name__, url_prefix="/v1")


# The route modules attach themselves to ``openrosa`` when imported.
from server.openrosa import routes  # noqa: E402, F401
