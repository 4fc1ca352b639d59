"""Carts and orders in Redis when there is Redis but no database; the catalogue from the JSON file.

A cart is a hash (product id -> quantity) that expires 30 days after its last
change; an order is a JSON string without expiry. Changes that read before they
write (the quantity limit, checkout) run in WATCH/MULTI transactions, so a
concurrent change to the same cart makes one of them retry rather than both win.
"""

from __future__ import annotations

import json

from . import (MAX_QUANTITY, CartChanged, EmptyCart, QuantityLimit, StoreUnavailable,
               build_order, priced_lines)

CART_TTL = 30 * 24 * 3600


def _cart_key(cart_id: str) -> str:
    return f"stylesphere:cart:{cart_id}"


def _order_key(order_id: str) -> str:
    return f"stylesphere:order:{order_id}"


class RedisStore:
    name = "redis"
    shared = True

    def __init__(self, redis, seed: list[dict]):
        self.redis = redis
        self._products = {p["id"]: p for p in seed}

    def _call(self, fn):
        try:
            return self.redis.call(fn)
        except self.redis.errors as exc:
            raise StoreUnavailable(f"cannot reach Redis: {exc}") from exc

    def ensure_ready(self) -> None:
        self._call(lambda r: r.ping())

    def products(self) -> list[dict]:
        return sorted(self._products.values(), key=lambda p: p["sort_order"])

    def cart(self, cart_id: str) -> list[tuple[str, int]]:
        lines = self._call(lambda r: r.hgetall(_cart_key(cart_id)))
        return sorted((pid, int(q)) for pid, q in lines.items())

    def _watched(self, key: str, body):
        import redis

        def run(client):
            for _ in range(5):
                with client.pipeline() as pipe:
                    try:
                        pipe.watch(key)
                        result = body(pipe)
                        pipe.execute()
                        return result
                    except redis.exceptions.WatchError:
                        continue
            raise CartChanged("the cart changed while it was being updated; try again")
        return self._call(run)

    def add_to_cart(self, cart_id: str, product_id: str, quantity: int) -> int:
        key = _cart_key(cart_id)

        def body(pipe):
            current = int(pipe.hget(key, product_id) or 0)
            if current + quantity > MAX_QUANTITY:
                raise QuantityLimit(f"at most {MAX_QUANTITY} of one product per order",
                                    productId=product_id, quantity=current, max=MAX_QUANTITY)
            pipe.multi()
            pipe.hset(key, product_id, current + quantity)
            pipe.expire(key, CART_TTL)
            return current + quantity
        return self._watched(key, body)

    def set_cart_line(self, cart_id: str, product_id: str, quantity: int) -> int:
        key = _cart_key(cart_id)

        def write(r):
            with r.pipeline() as pipe:
                pipe.hset(key, product_id, quantity)
                pipe.expire(key, CART_TTL)
                pipe.execute()
        self._call(write)
        return quantity

    def remove_cart_line(self, cart_id: str, product_id: str) -> None:
        self._call(lambda r: r.hdel(_cart_key(cart_id), product_id))

    def clear_cart(self, cart_id: str) -> None:
        self._call(lambda r: r.delete(_cart_key(cart_id)))

    def place_order(self, cart_id: str, order_id: str, created_at: str) -> dict:
        key = _cart_key(cart_id)

        def body(pipe):
            cart = sorted((pid, int(q)) for pid, q in pipe.hgetall(key).items())
            if not cart:
                raise EmptyCart("add something to the cart first")
            order = build_order(order_id, cart_id, created_at, priced_lines(cart, self._products))
            pipe.multi()
            pipe.set(_order_key(order_id), json.dumps(order), nx=True)
            pipe.delete(key)
            return order
        return self._watched(key, body)

    def order(self, order_id: str) -> dict | None:
        text = self._call(lambda r: r.get(_order_key(order_id)))
        return json.loads(text) if text else None
