"""StyleSphere API: a small read-only product catalogue served under /api."""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from urllib.parse import quote

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

DEFAULT_IMAGES_BASE_URL = "/images/"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_REQUIRED_FIELDS = (
    "id", "name", "price", "currency", "category",
    "description", "materials", "sustainability", "image",
)


def load_products() -> list[dict]:
    """Read and validate the product catalogue shipped with the package."""
    text = resources.files(__package__).joinpath("data/products.json").read_text("utf-8")
    products = json.loads(text)
    seen = set()
    for product in products:
        missing = [f for f in _REQUIRED_FIELDS if f not in product]
        if missing:
            raise ValueError(f"product {product.get('id')!r} lacks {missing}")
        if not _ID_RE.match(product["id"]) or product["id"] in seen:
            raise ValueError(f"bad or duplicate product id {product['id']!r}")
        seen.add(product["id"])
    return products


def _image_url(base: str, image: str) -> str:
    return base.rstrip("/") + "/" + quote(image)


def create_app(images_base_url: str | None = None) -> Flask:
    """Build the Flask application.

    ``images_base_url`` defaults to the IMAGES_BASE_URL environment variable
    (the public images prefix of the assets bucket), or ``/images/``.
    """
    app = Flask(__name__)
    app.json.sort_keys = False
    base = images_base_url or os.environ.get("IMAGES_BASE_URL") or DEFAULT_IMAGES_BASE_URL
    release = os.environ.get("APP_RELEASE", "dev")

    catalogue = []
    for product in load_products():
        item = dict(product)
        item["image_url"] = _image_url(base, product["image"])
        catalogue.append(item)
    by_id = {p["id"]: p for p in catalogue}
    categories = sorted({p["category"] for p in catalogue})

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.path != "/api/health" and response.status_code == 200:
            response.headers.setdefault("Cache-Control", "public, max-age=60")
        else:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/api/health")
    def health():
        return jsonify(status="ok", release=release)

    @app.get("/api/products")
    def list_products():
        category = request.args.get("category")
        if category is None or category == "":
            items = catalogue
        else:
            wanted = category.strip().lower()
            if wanted not in categories:
                return jsonify(
                    error="unknown category",
                    category=category[:64],
                    categories=categories,
                ), 400
            items = [p for p in catalogue if p["category"] == wanted]
        return jsonify(products=items, count=len(items), categories=categories)

    @app.get("/api/products/<product_id>")
    def get_product(product_id: str):
        product = by_id.get(product_id)
        if product is None:
            return jsonify(error="product not found", id=product_id[:64]), 404
        return jsonify(product)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return jsonify(error=exc.name.lower(), status=exc.code), exc.code

    return app
