"""gunicorn entry point: ``gunicorn wsgi:app``."""
from stylesphere_api import create_app

app = create_app()
