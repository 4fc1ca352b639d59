"""The default store: the catalogue from the JSON file, carts and orders in process memory.

Carts and orders live in this one process: each gunicorn worker and each
instance has its own, and a restart loses them. Good enough for the plain demo
stack; configure a database, DynamoDB or Redis for anything else.
"""

from __future__ import annotations

import threading

from . import MAX_QUANTITY, EmptyCart, QuantityLimit, build_order, priced_lines


class MemoryStore:
    name = "memory"
    shared = False  # another process does not see these carts and orders

    def __init__(self, seed: list[dict]):
        self._products = {p["id"]: p for p in seed}
        self._carts: dict[str, dict[str, int]] = {}
        self._orders: dict[str, dict] = {}
        self._lock = threading.Lock()

    def ensure_ready(self) -> None:
        pass

    def products(self) -> list[dict]:
        return sorted(self._products.values(), key=lambda p: p["sort_order"])

    def cart(self, cart_id: str) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._carts.get(cart_id, {}).items())

    def add_to_cart(self, cart_id: str, product_id: str, quantity: int) -> int:
        with self._lock:
            lines = self._carts.setdefault(cart_id, {})
            new = lines.get(product_id, 0) + quantity
            if new > MAX_QUANTITY:
                raise QuantityLimit(f"at most {MAX_QUANTITY} of one product per order",
                                    productId=product_id, quantity=lines.get(product_id, 0), max=MAX_QUANTITY)
            lines[product_id] = new
            return new

    def set_cart_line(self, cart_id: str, product_id: str, quantity: int) -> int:
        with self._lock:
            self._carts.setdefault(cart_id, {})[product_id] = quantity
            return quantity

    def remove_cart_line(self, cart_id: str, product_id: str) -> None:
        with self._lock:
            self._carts.get(cart_id, {}).pop(product_id, None)

    def clear_cart(self, cart_id: str) -> None:
        with self._lock:
            self._carts.pop(cart_id, None)

    def place_order(self, cart_id: str, order_id: str, created_at: str) -> dict:
        with self._lock:
            cart = list(self._carts.get(cart_id, {}).items())
            if not cart:
                raise EmptyCart("add something to the cart first")
            order = build_order(order_id, cart_id, created_at, priced_lines(cart, self._products))
            self._orders[order_id] = order
            self._carts.pop(cart_id, None)
            return order

    def order(self, order_id: str) -> dict | None:
        with self._lock:
            return self._orders.get(order_id)
