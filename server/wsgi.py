"""WSGI entry point for gunicorn: ``gunicorn 'server.wsgi:app'`` (settings from SARHAD_* variables).

Run ``sarhad db upgrade`` first. Each worker, as it starts, finishes the files of transactions that a
crash interrupted (files of live transactions are locked and left alone).
"""

from server import create_app
from server.db import Database

app = create_app()
_database: Database = app.extensions["sarhad.db"]
_database.recover_blobs()
