"""gunicorn settings every Sarhad deployment needs: ``gunicorn --config python:server.gunicorn_conf …``.
Other settings (bind, workers, log files) stay on the command line."""

# Device keys and session tokens travel in addresses: print them as *** in the access and error logs.
logger_class = "server.gunicorn_logging.RedactingLogger"
