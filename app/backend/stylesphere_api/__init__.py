"""StyleSphere API: the product catalogue, a cart per browser and orders, served under /api.

The catalogue, carts and orders live in whichever store the environment names
(stores/: PostgreSQL, MySQL/MariaDB, DynamoDB, Redis, else process memory); the
catalogue JSON shipped here seeds it. See app/README.md for the settings.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets as _secrets
import threading
import time
from datetime import datetime, timezone
from importlib import resources
from urllib.parse import quote

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .cache import CatalogCache, redis_client
from .receipts import Receipts, render
from .settings import Settings
from .stores import MAX_QUANTITY, EmptyCart, StoreError, StoreUnavailable, UnknownProduct, make_store, product_row

log = logging.getLogger(__name__)

DEFAULT_IMAGES_BASE_URL = "/images/"
CART_COOKIE = "stylesphere_cart"
CART_COOKIE_MAX_AGE = 30 * 24 * 3600
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_CART_ID_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")
_ORDER_ID_RE = re.compile(r"^[0-9a-f]{20}$")
_REQUIRED_FIELDS = (
    "id", "name", "price", "currency", "category",
    "description", "materials", "sustainability", "image",
)
_PUBLIC_FIELDS = ("id", "name", "price", "currency", "category",
                  "description", "materials", "sustainability", "image")


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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _money(cents: int) -> float:
    # The catalogue has always answered prices as JSON numbers in units (29.0).
    return cents / 100


class Readiness:
    """Creates the store's schema and seeds it, retrying in the background until it works.

    The database may become reachable minutes after the instance boots (RDS still
    creating); the API must answer /api/health meanwhile, or the load balancer
    would replace instances that are only waiting. Every process does this on its
    own; the stores make it safe to do at the same time.
    """

    def __init__(self, store, first_delay: float = 0.5, max_delay: float = 30.0):
        self.store = store
        self.ready = False
        self.last_error: str | None = None
        self._done = threading.Event()
        self._background = False
        self._first_delay = first_delay
        self._max_delay = max_delay

    def start(self, background: bool = True) -> None:
        self._background = background
        if not background:
            self._attempt()
            return
        threading.Thread(target=self._run, name="stylesphere-store-start", daemon=True).start()

    def _attempt(self) -> bool:
        try:
            self.store.ensure_ready()
        except StoreUnavailable as exc:
            self.last_error = str(exc)
            return False
        except Exception as exc:
            # Anything else (a permission the instance role does not have yet, a
            # schema the database refuses) is logged in full and retried too: this
            # thread must not die and leave the API answering 503 for good.
            if not self._background:
                raise
            log.exception("store %s could not start", self.store.name)
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        self.ready = True
        self.last_error = None
        self._done.set()
        return True

    def _run(self) -> None:
        delay = self._first_delay
        while not self._attempt():
            log.warning("store %s not ready (%s); retrying in %.0f s", self.store.name, self.last_error, delay)
            time.sleep(delay)
            delay = min(delay * 2, self._max_delay)
        log.info("store %s ready", self.store.name)

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


def create_app(images_base_url: str | None = None, settings: Settings | None = None,
               background_start: bool = True) -> Flask:
    """Build the Flask application.

    ``images_base_url`` defaults to the IMAGES_BASE_URL environment variable
    (the public images prefix of the assets bucket), or ``/images/``.
    ``settings`` default to the environment (Settings.from_env). With
    ``background_start`` the store's schema and seed are retried in a thread;
    without, they are attempted once before this returns (tests).
    """
    app = Flask(__name__)
    app.json.sort_keys = False
    base = images_base_url or os.environ.get("IMAGES_BASE_URL") or DEFAULT_IMAGES_BASE_URL
    release = os.environ.get("APP_RELEASE", "dev")
    settings = settings or Settings.from_env()

    seed = [product_row(p, n) for n, p in enumerate(load_products())]
    store = make_store(settings, seed)
    redis = store.redis if getattr(store, "name", "") == "redis" else redis_client(settings)
    cache = CatalogCache(redis, settings.catalog_cache_ttl)
    receipts = Receipts(settings.shared_files_dir)
    readiness = Readiness(store)
    readiness.start(background=background_start)
    app.extensions["stylesphere"] = {"store": store, "readiness": readiness, "cache": cache,
                                     "receipts": receipts, "settings": settings}

    def public(product: dict) -> dict:
        """A stored product as the API has always shown it: the JSON file's fields, price in units."""
        item = {f: product[f] for f in _PUBLIC_FIELDS if f != "price"}
        item["price"] = _money(product["price_cents"])
        item = {f: item[f] for f in _PUBLIC_FIELDS}  # the file's field order
        item["image_url"] = _image_url(base, product["image"])
        return item

    def require_ready():
        if not readiness.ready:
            raise StoreUnavailable(f"the {store.name} store is starting")

    def catalogue() -> list[dict]:
        """The store's products, through the Redis cache when there is one."""
        cached = cache.get()
        if cached is not None:
            return cached
        require_ready()
        products = store.products()
        cache.put(products)
        return products

    # ------------------------------------------------------------------ cart identity

    def cart_id(create: bool) -> str | None:
        """This browser's cart id from its cookie; a new random one when asked to create."""
        value = request.cookies.get(CART_COOKIE, "")
        if _CART_ID_RE.match(value):
            return value
        if not create:
            return None
        if "new_cart_id" not in g:
            g.new_cart_id = _secrets.token_urlsafe(24)
        return g.new_cart_id

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if (request.method == "GET" and request.path.startswith("/api/products")
                and response.status_code == 200):
            response.headers.setdefault("Cache-Control", "public, max-age=60")
        else:
            # Health, carts, orders and errors are per request and per browser.
            response.headers.setdefault("Cache-Control", "no-store")
        new_id = g.get("new_cart_id")
        if new_id is not None:
            forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
            response.set_cookie(CART_COOKIE, new_id, max_age=CART_COOKIE_MAX_AGE, path="/api",
                                httponly=True, samesite="Lax",
                                secure=request.is_secure or forwarded == "https")
        return response

    # ------------------------------------------------------------------ health and catalogue

    @app.get("/api/health")
    def health():
        # No I/O: the target group's check must pass while the database is still
        # being created; store_ready tells a person whether it is there yet.
        return jsonify(status="ok", release=release, store=store.name, store_ready=readiness.ready)

    @app.get("/api/products")
    def list_products():
        products = catalogue()
        categories = sorted({p["category"] for p in products})
        category = request.args.get("category")
        if category is None or category == "":
            items = products
        else:
            wanted = category.strip().lower()
            if wanted not in categories:
                return jsonify(
                    error="unknown category",
                    category=category[:64],
                    categories=categories,
                ), 400
            items = [p for p in products if p["category"] == wanted]
        return jsonify(products=[public(p) for p in items], count=len(items), categories=categories)

    @app.get("/api/products/<product_id>")
    def get_product(product_id: str):
        product = next((p for p in catalogue() if p["id"] == product_id), None)
        if product is None:
            return jsonify(error="product not found", id=product_id[:64]), 404
        return jsonify(public(product))

    # ------------------------------------------------------------------ cart

    def cart_view(cid: str | None) -> dict:
        lines_in = store.cart(cid) if cid else []
        by_id = {p["id"]: p for p in catalogue()} if lines_in else {}
        lines, total, count = [], 0, 0
        currency = "EUR"
        for product_id, quantity in sorted(
                lines_in, key=lambda l: (by_id[l[0]]["sort_order"] if l[0] in by_id else 1 << 30, l[0])):
            product = by_id.get(product_id)
            line = {"productId": product_id, "quantity": quantity, "available": product is not None}
            if product is not None:
                line.update(name=product["name"], unitPrice=_money(product["price_cents"]),
                            lineTotal=_money(product["price_cents"] * quantity),
                            currency=product["currency"], image_url=_image_url(base, product["image"]))
                total += product["price_cents"] * quantity
                currency = product["currency"]
            count += quantity
            lines.append(line)
        return {"lines": lines, "itemCount": count, "total": _money(total), "currency": currency,
                "maxQuantity": MAX_QUANTITY}

    def json_body(optional: bool = False) -> dict:
        if optional and not request.get_data():
            return {}
        body = request.get_json(silent=True, force=True)
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def quantity_of(body: dict, key: str) -> int:
        value = body.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_QUANTITY:
            raise BadRequest(f"{key} must be a whole number from 1 to {MAX_QUANTITY}",
                             field=key, min=1, max=MAX_QUANTITY)
        return value

    def product_id_of(body: dict) -> str:
        value = body.get("productId")
        if not isinstance(value, str) or not value:
            raise BadRequest("productId is required", field="productId")
        return value

    @app.get("/api/cart")
    def get_cart():
        require_ready()
        return jsonify(cart_view(cart_id(create=False)))

    @app.post("/api/cart")
    def post_cart():
        """{"productId", "quantity"} sets that line; {"productId", "add"} adds to it."""
        body = json_body()
        product_id = product_id_of(body)
        if "add" in body and "quantity" in body:
            raise BadRequest("give either quantity (set the line) or add (add to it), not both")
        key = "add" if "add" in body else "quantity"
        quantity = quantity_of(body, key)
        require_ready()
        if not any(p["id"] == product_id for p in catalogue()):
            raise UnknownProduct("no product has this id", productId=product_id[:64])
        cid = cart_id(create=True)
        if key == "add":
            store.add_to_cart(cid, product_id, quantity)
        else:
            store.set_cart_line(cid, product_id, quantity)
        return jsonify(cart_view(cid))

    @app.delete("/api/cart")
    def delete_cart():
        """{"productId"} removes that line; no body empties the cart."""
        body = json_body(optional=True)
        require_ready()
        cid = cart_id(create=False)
        if cid is not None:
            if "productId" in body:
                store.remove_cart_line(cid, product_id_of(body))
            else:
                store.clear_cart(cid)
        return jsonify(cart_view(cid))

    # ------------------------------------------------------------------ orders

    def order_view(order: dict) -> dict:
        return {
            "id": order["id"], "createdAt": order["createdAt"], "currency": order["currency"],
            "total": _money(order["totalCents"]),
            "itemCount": sum(line["quantity"] for line in order["lines"]),
            "lines": [{"productId": l["productId"], "name": l["name"], "quantity": l["quantity"],
                       "unitPrice": _money(l["unitPriceCents"]),
                       "lineTotal": _money(l["unitPriceCents"] * l["quantity"])} for l in order["lines"]],
            "receiptUrl": f"/api/orders/{order['id']}/receipt",
        }

    @app.post("/api/orders")
    def post_order():
        require_ready()
        cid = cart_id(create=False)
        if cid is None:
            raise EmptyCart("add something to the cart first")
        order = store.place_order(cid, _secrets.token_hex(10), _now())
        try:
            receipts.save(order)
        except OSError as exc:
            # The order is placed; the receipt can still be rendered from the store.
            log.warning("could not write the receipt of order %s: %s", order["id"], exc)
        return jsonify(order_view(order)), 201

    def owned_order(order_id: str) -> dict | None:
        cid = cart_id(create=False)
        if cid is None or not _ORDER_ID_RE.match(order_id):
            return None
        require_ready()
        order = store.order(order_id)
        return order if order is not None and order["owner"] == cid else None

    @app.get("/api/orders/<order_id>")
    def get_order(order_id: str):
        order = owned_order(order_id)
        if order is None:
            return jsonify(error="order not found", id=order_id[:64]), 404
        return jsonify(order_view(order))

    @app.get("/api/orders/<order_id>/receipt")
    def get_receipt(order_id: str):
        cid = cart_id(create=False)
        text = receipts.load(order_id, cid) if cid and _ORDER_ID_RE.match(order_id) else None
        if text is None:
            order = owned_order(order_id)
            if order is None:
                return jsonify(error="order not found", id=order_id[:64]), 404
            text = render(order)
        return Response(text, mimetype="text/plain", headers={
            "Content-Disposition": f'inline; filename="stylesphere-{order_id}.txt"'})

    # ------------------------------------------------------------------ errors

    @app.errorhandler(BadRequest)
    def _bad_request(exc: "BadRequest"):
        return jsonify(error="bad request", detail=str(exc), **exc.extra), 400

    @app.errorhandler(StoreError)
    def _store_error(exc: StoreError):
        return jsonify(error=exc.error, detail=exc.detail, **exc.extra), exc.status

    @app.errorhandler(StoreUnavailable)
    def _unavailable(exc: StoreUnavailable):
        log.warning("store unavailable: %s", exc)
        response = jsonify(error="store unavailable", store=store.name,
                           detail="The shop's database is not reachable yet; try again in a moment.")
        response.headers["Retry-After"] = "5"
        return response, 503

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return jsonify(error=exc.name.lower(), status=exc.code), exc.code

    return app


class BadRequest(Exception):
    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.extra = extra

