"""Where the catalogue, the carts and the orders live.

Every store keeps the same shapes: a product is the catalogue's dict with
``price_cents`` (integer cents) and ``sort_order``; a cart is a list of
``(product_id, quantity)``; an order is a dict with ``id``, ``owner`` (the cart
id that placed it), ``createdAt``, ``currency``, ``totalCents`` and ``lines``.
The API module turns cents back into the prices it has always shown.
"""

from __future__ import annotations

MAX_QUANTITY = 10  # per cart line


class StoreError(Exception):
    """A request the store refuses; ``status`` and ``error`` become the JSON answer."""

    status = 409
    error = "conflict"

    def __init__(self, detail: str = "", **extra):
        super().__init__(detail or self.error)
        self.detail = detail
        self.extra = extra


class EmptyCart(StoreError):
    status = 409
    error = "cart is empty"


class UnknownProduct(StoreError):
    status = 404
    error = "product not found"


class ProductUnavailable(StoreError):
    """A product in the cart is gone from the catalogue (or its price changed) at checkout."""

    status = 409
    error = "product no longer available"


class QuantityLimit(StoreError):
    status = 409
    error = "quantity limit"


class CartChanged(StoreError):
    status = 409
    error = "cart changed"


class StoreUnavailable(Exception):
    """The store cannot be reached (yet): the API answers 503 and the caller retries."""


def product_row(product: dict, sort_order: int) -> dict:
    """The catalogue JSON's product as the stores keep it: the price in integer cents."""
    row = {k: v for k, v in product.items() if k != "price"}
    row["price_cents"] = int(round(float(product["price"]) * 100))
    row["sort_order"] = sort_order
    return row


def build_order(order_id: str, owner: str, created_at: str, lines: list[dict]) -> dict:
    """An order from priced lines (productId, name, unitPriceCents, quantity, currency)."""
    currencies = {line["currency"] for line in lines}
    if len(currencies) != 1:
        raise StoreError("the cart mixes currencies", currencies=sorted(currencies))
    return {
        "id": order_id,
        "owner": owner,
        "createdAt": created_at,
        "currency": currencies.pop(),
        "totalCents": sum(line["unitPriceCents"] * line["quantity"] for line in lines),
        "lines": [{k: line[k] for k in ("productId", "name", "unitPriceCents", "quantity")} for line in lines],
    }


def priced_lines(cart: list[tuple[str, int]], products: dict[str, dict]) -> list[dict]:
    """The cart's lines with name and price, in catalogue order; a missing product raises."""
    lines = []
    for product_id, quantity in cart:
        product = products.get(product_id)
        if product is None:
            raise ProductUnavailable(f"{product_id} is no longer in the catalogue", productId=product_id)
        lines.append({"productId": product_id, "name": product["name"], "quantity": quantity,
                      "unitPriceCents": product["price_cents"], "currency": product["currency"],
                      "sort_order": product["sort_order"]})
    lines.sort(key=lambda line: (line["sort_order"], line["productId"]))
    return lines


def make_store(settings, seed: list[dict]):
    """The store the settings name (see Settings.store_kind)."""
    kind = settings.store_kind
    if kind == "dynamodb":
        from .dynamodb import DynamoDBStore
        return DynamoDBStore(settings, seed)
    if kind in ("postgres", "mysql", "mariadb"):
        from .sql import SQLStore
        return SQLStore(settings, seed)
    if kind == "redis":
        from .redis_store import RedisStore
        from ..cache import redis_client
        return RedisStore(redis_client(settings), seed)
    from .memory import MemoryStore
    return MemoryStore(seed)
