"""The catalogue, carts and orders in PostgreSQL (psycopg 3) or MySQL/MariaDB (PyMySQL).

One schema for both dialects: VARCHAR keys, integer cents, ISO-8601 UTC text for
times (it sorts, and reads the same in both). Both drivers use %s placeholders, so
only a few statements differ, kept in _DIALECTS.

Starting is idempotent and safe with several processes at once (gunicorn workers,
instances of the Auto Scaling group): the schema is created under a lock held by
the database (an advisory lock in PostgreSQL, GET_LOCK in MySQL), because
concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalog;
the products are inserted with "do nothing if the key exists".
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time

from ..endpoints import database_host
from ..secrets import Secret
from . import (MAX_QUANTITY, EmptyCart, QuantityLimit, StoreUnavailable, build_order,
               priced_lines)

log = logging.getLogger(__name__)

_SCHEMA_LOCK_KEY = 0x5757_1E  # any constant the app owns, the same in every process
_POOL_SIZE = 4  # idle connections kept per process (gunicorn threads per worker is 2)
_CHECK_AFTER_IDLE = 30.0  # seconds idle after which a pooled connection is checked before use

_TABLES = (
    """CREATE TABLE IF NOT EXISTS products (
        id VARCHAR(64) NOT NULL PRIMARY KEY,
        sort_order INTEGER NOT NULL,
        name VARCHAR(200) NOT NULL,
        price_cents INTEGER NOT NULL,
        currency CHAR(3) NOT NULL,
        category VARCHAR(64) NOT NULL,
        description TEXT NOT NULL,
        materials TEXT NOT NULL,
        sustainability TEXT NOT NULL,
        image VARCHAR(200) NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS carts (
        id VARCHAR(64) NOT NULL PRIMARY KEY,
        created_at VARCHAR(32) NOT NULL,
        updated_at VARCHAR(32) NOT NULL
    )""",
    # No foreign key to products: a product that leaves the catalogue must not take
    # lines out of carts silently; checkout says which one is gone.
    f"""CREATE TABLE IF NOT EXISTS cart_items (
        cart_id VARCHAR(64) NOT NULL,
        product_id VARCHAR(64) NOT NULL,
        quantity INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND {MAX_QUANTITY}),
        PRIMARY KEY (cart_id, product_id),
        FOREIGN KEY (cart_id) REFERENCES carts (id) ON DELETE CASCADE
    )""",
    """CREATE TABLE IF NOT EXISTS orders (
        id VARCHAR(64) NOT NULL PRIMARY KEY,
        cart_id VARCHAR(64) NOT NULL,
        created_at VARCHAR(32) NOT NULL,
        currency CHAR(3) NOT NULL,
        total_cents INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS order_items (
        order_id VARCHAR(64) NOT NULL,
        line INTEGER NOT NULL,
        product_id VARCHAR(64) NOT NULL,
        name VARCHAR(200) NOT NULL,
        unit_price_cents INTEGER NOT NULL,
        quantity INTEGER NOT NULL,
        PRIMARY KEY (order_id, line),
        FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE
    )""",
)

_PRODUCT_COLUMNS = ("id", "sort_order", "name", "price_cents", "currency", "category",
                    "description", "materials", "sustainability", "image")

_DIALECTS = {
    "postgres": {
        "table_suffix": "",
        "lock": "SELECT pg_advisory_xact_lock(%s)" % _SCHEMA_LOCK_KEY,
        "unlock": None,  # released with the transaction
        "insert_product": "INSERT INTO products ({cols}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING",
        "touch_cart": "INSERT INTO carts (id, created_at, updated_at) VALUES (%s, %s, %s) "
                      "ON CONFLICT (id) DO UPDATE SET updated_at = EXCLUDED.updated_at",
        "upsert_line": "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES (%s, %s, %s) "
                       "ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = EXCLUDED.quantity",
    },
    "mysql": {
        "table_suffix": " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "lock": "SELECT GET_LOCK('stylesphere_schema', 60)",
        "unlock": "SELECT RELEASE_LOCK('stylesphere_schema')",
        # ON DUPLICATE KEY with a no-op rather than INSERT IGNORE, which would also
        # turn other errors (a too-long value) into warnings.
        "insert_product": "INSERT INTO products ({cols}) VALUES ({marks}) ON DUPLICATE KEY UPDATE id = id",
        "touch_cart": "INSERT INTO carts (id, created_at, updated_at) VALUES (%s, %s, %s) "
                      "ON DUPLICATE KEY UPDATE updated_at = VALUES(updated_at)",
        "upsert_line": "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES (%s, %s, %s) "
                       "ON DUPLICATE KEY UPDATE quantity = VALUES(quantity)",
    },
}
_DIALECTS["mariadb"] = _DIALECTS["mysql"]


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Driver:
    """What differs between psycopg and PyMySQL: connecting, and reading their errors."""

    def __init__(self, engine: str):
        self.engine = engine
        if engine == "postgres":
            import psycopg

            self.module = psycopg
            self.unavailable = (psycopg.OperationalError, psycopg.InterfaceError)
        else:
            import pymysql

            self.module = pymysql
            self.unavailable = (pymysql.err.OperationalError, pymysql.err.InterfaceError)

    def connect(self, settings, user: str, password: str):
        if self.engine == "postgres":
            return self.module.connect(
                host=database_host(settings), port=settings.database_port, dbname=settings.database_name,
                user=user, password=password, connect_timeout=5,
                # require: encrypted, like RDS's rds.force_ssl wants; the RDS CA is not in
                # the image's trust store, so the certificate is not verified (as libpq's
                # own sslmode=require does not either).
                sslmode="require" if settings.database_tls else "prefer",
                application_name="stylesphere-api",
            )
        tls = None
        if settings.database_tls:
            tls = ssl.create_default_context()
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE  # as sslmode=require above
        return self.module.connect(
            host=database_host(settings), port=settings.database_port, database=settings.database_name,
            user=user, password=password, connect_timeout=5, read_timeout=15, write_timeout=15,
            charset="utf8mb4", autocommit=False, ssl=tls,
        )

    def is_auth_failure(self, exc: Exception) -> bool:
        """The server refused the password (a rotated secret), by error code."""
        if self.engine == "postgres":
            # 28P01 invalid_password, 28000 invalid_authorization_specification.
            return getattr(exc, "sqlstate", None) in ("28P01", "28000") or (
                exc.__class__.__name__ == "OperationalError" and _pg_auth_failed(exc))
        return bool(exc.args) and exc.args[0] in (1045,)  # ER_ACCESS_DENIED_ERROR


def _pg_auth_failed(exc) -> bool:
    # A login libpq refuses carries no SQLSTATE in psycopg (there is no result to
    # carry it, only the connection's error message), so this is the one place that
    # reads words: libpq's "password authentication failed" and "no password supplied".
    pgconn = getattr(exc, "pgconn", None)
    if pgconn is None:
        return False
    message = (pgconn.error_message or b"").decode("utf-8", "replace")
    return "authentication failed" in message or "no password supplied" in message


class SQLStore:
    shared = True

    def __init__(self, settings, seed: list[dict]):
        self.settings = settings
        self.name = settings.database_engine
        self.driver = _Driver(settings.database_engine)
        self.dialect = _DIALECTS[settings.database_engine]
        self.seed = seed
        self.secret = Secret(value=settings.database_password, arn=settings.database_secret_arn,
                             region=settings.aws_region, field="password")
        self._idle: list = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connections

    def _connect(self):
        password = self.secret.get()
        user = self.settings.database_user or self.secret.username or ""
        try:
            return self.driver.connect(self.settings, user, password)
        except self.driver.unavailable as exc:
            if self.secret.refreshable and self.driver.is_auth_failure(exc):
                log.warning("the database refused the cached password; reading the secret again")
                password = self.secret.refresh()
                try:
                    return self.driver.connect(self.settings, self.settings.database_user
                                               or self.secret.username or "", password)
                except self.driver.unavailable as again:
                    raise StoreUnavailable(f"cannot connect to {self.name}: {again}") from again
            raise StoreUnavailable(f"cannot connect to {self.name}: {exc}") from exc

    def _pooled(self):
        """An idle connection that still works, or None.

        One idle for a while is checked first: the server, a proxy or an RDS failover
        may have closed it, and the request it would serve should not be the one to fail.
        """
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn, since = self._idle.pop()
            if time.monotonic() - since < _CHECK_AFTER_IDLE:
                return conn
            try:
                cur = conn.cursor()
                cur.execute("SELECT 1")
                cur.fetchall()
                cur.close()
                conn.rollback()
                return conn
            except self.driver.unavailable:
                with contextlib.suppress(Exception):
                    conn.close()

    def close(self) -> None:
        """Close the idle connections (tests; a password rotation takes effect on new ones)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            with contextlib.suppress(Exception):
                conn.close()

    @contextlib.contextmanager
    def transaction(self):
        """A cursor in one transaction: committed on success, rolled back on any error.

        A connection that failed is closed, not returned to the pool, so the next
        request opens a fresh one (the database restarted, a failover happened).
        """
        conn = self._pooled()
        if conn is None:
            conn = self._connect()
        broken = False
        try:
            cur = conn.cursor()
            try:
                yield cur
            finally:
                with contextlib.suppress(Exception):
                    cur.close()
            conn.commit()
        except self.driver.unavailable as exc:
            broken = True
            raise StoreUnavailable(f"{self.name} went away: {exc}") from exc
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                broken = True
            raise
        finally:
            if broken:
                with contextlib.suppress(Exception):
                    conn.close()
            else:
                with self._lock:
                    if len(self._idle) < _POOL_SIZE:
                        self._idle.append((conn, time.monotonic()))
                        conn = None
                if conn is not None:
                    conn.close()

    # ------------------------------------------------------------------ schema and seed

    def ensure_ready(self) -> None:
        """Create the tables and seed the catalogue; safe to run from many processes at once."""
        cols = ", ".join(_PRODUCT_COLUMNS)
        marks = ", ".join(["%s"] * len(_PRODUCT_COLUMNS))
        insert = self.dialect["insert_product"].format(cols=cols, marks=marks)
        with self.transaction() as cur:
            cur.execute(self.dialect["lock"])
            try:
                for ddl in _TABLES:
                    cur.execute(ddl + self.dialect["table_suffix"])
            finally:
                if self.dialect["unlock"]:
                    cur.execute(self.dialect["unlock"])
        with self.transaction() as cur:
            cur.executemany(insert, [tuple(p[c] for c in _PRODUCT_COLUMNS) for p in self.seed])

    # ------------------------------------------------------------------ catalogue

    def products(self) -> list[dict]:
        with self.transaction() as cur:
            cur.execute(f"SELECT {', '.join(_PRODUCT_COLUMNS)} FROM products ORDER BY sort_order, id")
            rows = cur.fetchall()
        return [dict(zip(_PRODUCT_COLUMNS, row)) for row in rows]

    # ------------------------------------------------------------------ carts

    def _lock_cart(self, cur, cart_id: str) -> None:
        # The upsert takes the cart row's lock for the transaction: concurrent
        # changes to one cart (two tabs) queue instead of losing an update.
        now = _now()
        cur.execute(self.dialect["touch_cart"], (cart_id, now, now))

    def _quantity(self, cur, cart_id: str, product_id: str) -> int:
        cur.execute("SELECT quantity FROM cart_items WHERE cart_id = %s AND product_id = %s",
                    (cart_id, product_id))
        row = cur.fetchone()
        return row[0] if row else 0

    def cart(self, cart_id: str) -> list[tuple[str, int]]:
        with self.transaction() as cur:
            cur.execute("SELECT product_id, quantity FROM cart_items WHERE cart_id = %s ORDER BY product_id",
                        (cart_id,))
            return [(row[0], row[1]) for row in cur.fetchall()]

    def add_to_cart(self, cart_id: str, product_id: str, quantity: int) -> int:
        with self.transaction() as cur:
            self._lock_cart(cur, cart_id)
            current = self._quantity(cur, cart_id, product_id)
            if current + quantity > MAX_QUANTITY:
                raise QuantityLimit(f"at most {MAX_QUANTITY} of one product per order",
                                    productId=product_id, quantity=current, max=MAX_QUANTITY)
            cur.execute(self.dialect["upsert_line"], (cart_id, product_id, current + quantity))
            return current + quantity

    def set_cart_line(self, cart_id: str, product_id: str, quantity: int) -> int:
        with self.transaction() as cur:
            self._lock_cart(cur, cart_id)
            cur.execute(self.dialect["upsert_line"], (cart_id, product_id, quantity))
            return quantity

    def remove_cart_line(self, cart_id: str, product_id: str) -> None:
        with self.transaction() as cur:
            cur.execute("DELETE FROM cart_items WHERE cart_id = %s AND product_id = %s", (cart_id, product_id))

    def clear_cart(self, cart_id: str) -> None:
        with self.transaction() as cur:
            cur.execute("DELETE FROM cart_items WHERE cart_id = %s", (cart_id,))

    # ------------------------------------------------------------------ orders

    def place_order(self, cart_id: str, order_id: str, created_at: str) -> dict:
        """Read the cart, write the order and its lines, empty the cart: one transaction."""
        with self.transaction() as cur:
            cur.execute("SELECT id FROM carts WHERE id = %s FOR UPDATE", (cart_id,))
            if cur.fetchone() is None:
                raise EmptyCart("add something to the cart first")
            cur.execute(
                "SELECT ci.product_id, ci.quantity, p.name, p.price_cents, p.currency, p.sort_order "
                "FROM cart_items ci LEFT JOIN products p ON p.id = ci.product_id "
                "WHERE ci.cart_id = %s", (cart_id,))
            rows = cur.fetchall()
            if not rows:
                raise EmptyCart("add something to the cart first")
            products = {r[0]: {"name": r[2], "price_cents": r[3], "currency": r[4], "sort_order": r[5]}
                        for r in rows if r[2] is not None}
            order = build_order(order_id, cart_id, created_at,
                                priced_lines([(r[0], r[1]) for r in rows], products))
            self._write_order(cur, order)
            cur.execute("DELETE FROM cart_items WHERE cart_id = %s", (cart_id,))
            return order

    def _write_order(self, cur, order: dict) -> None:
        cur.execute("INSERT INTO orders (id, cart_id, created_at, currency, total_cents) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (order["id"], order["owner"], order["createdAt"], order["currency"], order["totalCents"]))
        cur.executemany(
            "INSERT INTO order_items (order_id, line, product_id, name, unit_price_cents, quantity) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [(order["id"], n, line["productId"], line["name"], line["unitPriceCents"], line["quantity"])
             for n, line in enumerate(order["lines"], start=1)])

    def order(self, order_id: str) -> dict | None:
        with self.transaction() as cur:
            cur.execute("SELECT id, cart_id, created_at, currency, total_cents FROM orders WHERE id = %s",
                        (order_id,))
            head = cur.fetchone()
            if head is None:
                return None
            cur.execute("SELECT product_id, name, unit_price_cents, quantity FROM order_items "
                        "WHERE order_id = %s ORDER BY line", (order_id,))
            lines = [{"productId": r[0], "name": r[1], "unitPriceCents": r[2], "quantity": r[3]}
                     for r in cur.fetchall()]
        return {"id": head[0], "owner": head[1], "createdAt": head[2], "currency": head[3],
                "totalCents": head[4], "lines": lines}
