"""WSGI entry point for gunicorn: ``gunicorn 'server.wsgi:app'`` (settings from SARHAD_* variables)."""

from server import create_app

app = create_app()
