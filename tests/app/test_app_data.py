"""The data tier against real stores: PostgreSQL, MariaDB (as the mysql and mariadb engines)
and Redis on loopback (servers.py), DynamoDB and Secrets Manager through moto."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from app_test_support import free_port
from stylesphere_api import CART_COOKIE, create_app
from stylesphere_api.cache import CATALOG_KEY
from stylesphere_api.settings import Settings
from stylesphere_api.stores import StoreUnavailable
from stylesphere_api.stores.dynamodb import DYNAMODB_ACTIONS

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "eu-west-1",
           "AWS_DEFAULT_REGION": "eu-west-1"}
STORES = ("postgres", "mysql", "mariadb", "dynamodb", "redis")


@pytest.fixture()
def aws(monkeypatch):
    from moto import mock_aws

    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def _fresh_store(kind: str, request) -> dict:
    """Settings for a fresh, empty store of this kind."""
    if kind == "postgres":
        server = request.getfixturevalue("postgres_server")
        return server.env("postgres", server.new_database())
    if kind in ("mysql", "mariadb"):
        server = request.getfixturevalue("mariadb_server")
        return server.env(kind, server.new_database())
    if kind == "dynamodb":
        request.getfixturevalue("aws")
        return {"CATALOG": "dynamodb", "DYNAMODB_TABLE_PREFIX": f"t{free_port()}-",
                "DYNAMODB_CREATE_TABLES": "1", "AWS_REGION": "eu-west-1"}
    server = request.getfixturevalue("redis_server")
    server.extra["client"].flushall()
    return {"REDIS_HOST": server.host, "REDIS_PORT": str(server.port), "REDIS_PASSWORD": server.extra["password"]}


@pytest.fixture(params=STORES)
def store_env(request):
    return _fresh_store(request.param, request)


@pytest.fixture(params=("postgres", "mysql", "dynamodb"))
def transactional_env(request):
    """The stores whose checkout is a database transaction (mariadb is the mysql code path)."""
    return _fresh_store(request.param, request)


def _app(env, background=False):
    return create_app(images_base_url="/images/", settings=Settings.from_env(env), background_start=background)


def _store(app):
    return app.extensions["stylesphere"]["store"]


def _cookie(client):
    return client.get_cookie(CART_COOKIE, path="/api").value


def _orders_in(store) -> int:
    if store.name == "dynamodb":
        return store.client.scan(TableName=store.table("orders"), Select="COUNT")["Count"]
    if store.name == "redis":
        return len(store.redis.client.keys("stylesphere:order:*"))
    with store.transaction() as cur:
        cur.execute("SELECT (SELECT COUNT(*) FROM orders) + (SELECT COUNT(*) FROM order_items)")
        return cur.fetchone()[0]


def _delete_product(store, product_id):
    if store.name == "dynamodb":
        store.client.delete_item(TableName=store.table("products"), Key={"productId": {"S": product_id}})
    else:
        with store.transaction() as cur:
            cur.execute("DELETE FROM products WHERE id = %s", (product_id,))


# --------------------------------------------------------------------------- every store

def test_seeding_is_idempotent_with_instances_starting_together(store_env):
    apps, errors = [], []

    def start():
        try:
            apps.append(_app(store_env))
        except Exception as exc:  # reported below with the store's name
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert all(a.extensions["stylesphere"]["readiness"].ready for a in apps)
    again = _app(store_env)
    products = _store(again).products()
    assert len(products) == 10 and len({p["id"] for p in products}) == 10
    body = again.test_client().get("/api/products").json
    assert body["count"] == 10 and body["products"][0]["price"] == 29.0
    assert again.test_client().get("/api/health").json["store"] == Settings.from_env(store_env).store_kind


def test_cart_and_order_on_the_store(store_env):
    app = _app(store_env)
    client = app.test_client()
    assert client.post("/api/cart", json={"productId": "organic-cotton-tee", "add": 2}).json["itemCount"] == 2
    assert client.post("/api/cart", json={"productId": "organic-cotton-tee", "add": 3}).json["itemCount"] == 5
    r = client.post("/api/cart", json={"productId": "organic-cotton-tee", "add": 6})
    assert r.status_code == 409 and r.json["error"] == "quantity limit"
    client.post("/api/cart", json={"productId": "canvas-market-tote", "quantity": 4})
    client.post("/api/cart", json={"productId": "linen-camp-shirt", "quantity": 1})
    client.delete("/api/cart", json={"productId": "linen-camp-shirt"})
    assert client.post("/api/cart", json={"productId": "nope-nope"}).status_code == 404
    cart = client.get("/api/cart").json
    assert {l["productId"]: l["quantity"] for l in cart["lines"]} == {"organic-cotton-tee": 5, "canvas-market-tote": 4}

    # A second instance of the API on the same store sees the same cart.
    other = _app(store_env).test_client()
    other.set_cookie(CART_COOKIE, _cookie(client), path="/api")
    assert other.get("/api/cart").json == cart

    r = client.post("/api/orders")
    assert r.status_code == 201, r.json
    order = r.json
    assert order["itemCount"] == 9 and order["total"] == cart["total"]
    assert client.get("/api/cart").json["lines"] == []
    assert other.get(f"/api/orders/{order['id']}").json == order
    assert "Organic Cotton Crew Tee" in other.get(order["receiptUrl"]).text
    assert client.post("/api/orders").status_code == 409  # the cart is empty now
    assert _orders_in(_store(app)) >= 1

    client.post("/api/cart", json={"productId": "merino-rib-beanie"})
    assert client.delete("/api/cart").json["lines"] == []
    assert client.get("/api/cart").json["lines"] == []


# --------------------------------------------------------------------------- checkout failures

def test_a_vanished_product_fails_the_order_and_writes_nothing(transactional_env):
    app = _app(transactional_env)
    client = app.test_client()
    client.post("/api/cart", json={"productId": "organic-cotton-tee", "quantity": 1})
    client.post("/api/cart", json={"productId": "hemp-wide-leg-trousers", "quantity": 2})
    _delete_product(_store(app), "hemp-wide-leg-trousers")
    r = client.post("/api/orders")
    assert r.status_code == 409
    assert r.json["error"] == "product no longer available" and r.json["productId"] == "hemp-wide-leg-trousers"
    assert _orders_in(_store(app)) == 0
    assert len(_store(app).cart(_cookie(client))) == 2  # the cart is as it was


def test_an_error_mid_transaction_writes_nothing(transactional_env, monkeypatch):
    app = _app(transactional_env)
    store = _store(app)
    client = app.test_client()
    client.post("/api/cart", json={"productId": "organic-cotton-tee", "quantity": 1})
    client.post("/api/cart", json={"productId": "linen-slip-dress", "quantity": 1})
    if store.name == "dynamodb":
        # The product goes away between pricing the cart and the transaction: its
        # ConditionCheck cancels the transaction, order put and cart deletes included.
        priced = store._catalogue_for

        def racing(cart):
            products = priced(cart)
            _delete_product(store, "linen-slip-dress")
            return products
        monkeypatch.setattr(store, "_catalogue_for", racing)
        r = client.post("/api/orders")
        assert r.status_code == 409 and r.json["productId"] == "linen-slip-dress"
    else:
        written = store._write_order

        def then_fail(cur, order):
            written(cur, order)  # the order and its lines are in the transaction...
            raise RuntimeError("the instance died mid-checkout")  # ...and it never commits
        monkeypatch.setattr(store, "_write_order", then_fail)
        r = client.post("/api/orders")
        assert r.status_code == 500 and r.is_json
    assert _orders_in(store) == 0
    assert len(store.cart(_cookie(client))) == 2
    monkeypatch.undo()
    if store.name != "dynamodb":
        assert client.post("/api/orders").status_code == 201


# --------------------------------------------------------------------------- start-up and health

def test_health_answers_while_the_database_does_not_exist_yet(postgres_server):
    name = f"later_{free_port()}"
    env = postgres_server.env("postgres", name)
    app = _app(env, background=True)
    readiness = app.extensions["stylesphere"]["readiness"]
    readiness._first_delay = 0.2
    client = app.test_client()
    health = client.get("/api/health")
    assert health.status_code == 200
    assert health.json["store"] == "postgres" and health.json["store_ready"] is False
    for path in ("/api/products", "/api/products/organic-cotton-tee", "/api/cart"):
        r = client.get(path)
        assert r.status_code == 503 and r.is_json, path
        assert r.json["error"] == "store unavailable" and r.headers["Retry-After"]
    assert client.post("/api/cart", json={"productId": "organic-cotton-tee"}).status_code == 503

    postgres_server.extra["create_database"](name)  # RDS finishes creating the database
    assert readiness.wait(20), readiness.last_error
    assert client.get("/api/health").json["store_ready"] is True
    assert client.get("/api/products").json["count"] == 10


def test_an_unreachable_database_is_503_not_500(postgres_server):
    env = postgres_server.env("postgres", postgres_server.new_database())
    app = _app(env)
    store = _store(app)
    store.settings = dataclasses.replace(store.settings, database_port=free_port())
    store.close()
    client = app.test_client()
    assert client.get("/api/products").status_code == 503
    assert client.get("/api/health").status_code == 200


# --------------------------------------------------------------------------- Redis in front of the database

def test_catalogue_is_cached_in_redis_and_served_while_the_database_is_down(postgres_server, redis_server):
    redis = redis_server.extra["client"]
    redis.flushall()
    env = {**postgres_server.env("postgres", postgres_server.new_database()),
           "REDIS_HOST": redis_server.host, "REDIS_PORT": str(redis_server.port),
           "REDIS_PASSWORD": redis_server.extra["password"]}
    app = _app(env)
    client = app.test_client()
    first = client.get("/api/products").json
    client.post("/api/cart", json={"productId": "organic-cotton-tee"})
    assert redis.exists(CATALOG_KEY) and 0 < redis.ttl(CATALOG_KEY) <= 60
    assert len(json.loads(redis.get(CATALOG_KEY))) == 10

    store = _store(app)
    store.settings = dataclasses.replace(store.settings, database_port=free_port())  # the database goes away
    store.close()
    assert client.get("/api/products").json == first
    assert client.get("/api/products/linen-slip-dress").status_code == 200
    assert client.get("/api/cart").status_code == 503  # carts are in the database, not the cache
    redis.delete(CATALOG_KEY)
    assert client.get("/api/products").status_code == 503


def test_redis_down_only_costs_the_cache(postgres_server):
    env = {**postgres_server.env("postgres", postgres_server.new_database()),
           "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(free_port())}
    client = _app(env).test_client()
    assert client.get("/api/products").json["count"] == 10


# --------------------------------------------------------------------------- secrets

def _rds_secret(name, username, password):
    import boto3

    sm = boto3.client("secretsmanager", region_name="eu-west-1")
    return sm, sm.create_secret(Name=name, SecretString=json.dumps({"username": username, "password": password}))["ARN"]


@pytest.mark.parametrize("engine", ["postgres", "mariadb"])
def test_database_password_from_secrets_manager_and_its_rotation(engine, aws, request):
    server = request.getfixturevalue("postgres_server" if engine == "postgres" else "mariadb_server")
    database = server.new_database()
    role = f"rot{free_port()}"
    admin = server.extra["admin"]
    if engine == "postgres":
        admin(f"CREATE ROLE {role} LOGIN PASSWORD 'first-pw'")
        admin(f"GRANT ALL ON SCHEMA public TO {role}", dbname=database)
        admin(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}", dbname=database)
        rotate = lambda pw: admin(f"ALTER ROLE {role} PASSWORD '{pw}'")  # noqa: E731
    else:
        admin(f"CREATE USER '{role}'@'%' IDENTIFIED BY 'first-pw'")
        admin(f"GRANT ALL ON {database}.* TO '{role}'@'%'")
        rotate = lambda pw: admin(f"ALTER USER '{role}'@'%' IDENTIFIED BY '{pw}'")  # noqa: E731
    sm, arn = _rds_secret(f"rds!db-{role}", role, "first-pw")
    env = {**server.env(engine, database), "DATABASE_SECRET_ARN": arn, "AWS_REGION": "eu-west-1",
           "DATABASE_PASSWORD": "", "DATABASE_USER": ""}  # the username comes from the secret too
    app = _app(env)
    store = _store(app)
    client = app.test_client()
    assert client.get("/api/products").json["count"] == 10
    assert store.secret.reads == 1

    # RDS rotates the managed password: the server and the secret change, the cached value is stale.
    rotate("second-pw")
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": role, "password": "second-pw"}))
    assert client.get("/api/products").status_code == 200  # pooled connections keep working
    store.close()
    assert client.post("/api/cart", json={"productId": "organic-cotton-tee"}).status_code == 200
    assert store.secret.reads == 2
    assert client.get("/api/cart").json["itemCount"] == 1
    assert store.secret.reads == 2  # read once per rotation, not per connection


def test_redis_auth_token_from_secrets_manager_and_its_rotation(aws, redis_server):
    import boto3

    redis = redis_server.extra["client"]
    redis.flushall()
    token = redis_server.extra["password"]
    sm = boto3.client("secretsmanager", region_name="eu-west-1")
    arn = sm.create_secret(Name=f"redis-auth-{free_port()}", SecretString=token)["ARN"]
    env = {"REDIS_HOST": redis_server.host, "REDIS_PORT": str(redis_server.port),
           "REDIS_AUTH_SECRET_ARN": arn, "AWS_REGION": "eu-west-1"}
    app = _app(env)
    client = app.test_client()
    assert client.post("/api/cart", json={"productId": "organic-cotton-tee"}).status_code == 200
    rc = _store(app).redis
    assert rc.secret.reads == 1
    try:
        redis.config_set("requirepass", token + "-rotated")
        sm.put_secret_value(SecretId=arn, SecretString=token + "-rotated")
        rc.client.connection_pool.disconnect()
        assert client.get("/api/cart").json["itemCount"] == 1
        assert rc.secret.reads == 2
    finally:
        admin = type(redis)(host=redis_server.host, port=redis_server.port, password=token + "-rotated")
        admin.config_set("requirepass", token)
        redis_server.extra["client"].connection_pool.disconnect()


# --------------------------------------------------------------------------- DynamoDB's IAM actions

def test_dynamodb_uses_exactly_the_declared_actions(aws):
    env = {"CATALOG": "dynamodb", "DYNAMODB_TABLE_PREFIX": "iam-", "DYNAMODB_CREATE_TABLES": "1",
           "AWS_REGION": "eu-west-1"}
    seen: set[tuple[str, str]] = set()
    setup_only = {"CreateTable", "DescribeTable"}  # DYNAMODB_CREATE_TABLES, tests only

    def record(model, params, **_):
        op = model.name
        if op in setup_only:
            return
        if op == "TransactWriteItems":
            for item in params["TransactItems"]:
                (kind, body), = item.items()
                action = {"Put": "PutItem", "Delete": "DeleteItem", "Update": "UpdateItem",
                          "ConditionCheck": "ConditionCheckItem"}[kind]
                seen.add((body["TableName"].removeprefix("iam-"), "dynamodb:" + action))
        else:
            seen.add((params["TableName"].removeprefix("iam-"), "dynamodb:" + op))
        assert "IndexName" not in params  # no index is queried, so none is granted

    import boto3

    original = boto3.session.Session.client

    def client(self, *args, **kwargs):
        c = original(self, *args, **kwargs)
        c.meta.events.register("before-parameter-build.dynamodb", record)
        return c

    import unittest.mock

    with unittest.mock.patch.object(boto3.session.Session, "client", client):
        app = _app(env)
    c = app.test_client()
    c.post("/api/cart", json={"productId": "organic-cotton-tee", "add": 2})
    c.post("/api/cart", json={"productId": "organic-cotton-tee", "add": 9})
    c.post("/api/cart", json={"productId": "linen-camp-shirt", "quantity": 1})
    c.post("/api/cart", json={"productId": "merino-rib-beanie", "quantity": 1})
    c.delete("/api/cart", json={"productId": "merino-rib-beanie"})
    order = c.post("/api/orders").json
    c.get(f"/api/orders/{order['id']}")
    c.post("/api/cart", json={"productId": "linen-camp-shirt", "quantity": 1})
    c.delete("/api/cart")
    declared = {(table, action) for table, actions in DYNAMODB_ACTIONS.items() for action in actions}
    assert seen == declared
    assert set(DYNAMODB_ACTIONS) == {"products", "users", "orders", "cart"}


def test_store_unavailable_is_raised_for_a_missing_dynamodb_table(aws):
    env = {"CATALOG": "dynamodb", "DYNAMODB_TABLE_PREFIX": "absent-", "AWS_REGION": "eu-west-1"}
    app = _app(env)
    assert app.extensions["stylesphere"]["readiness"].ready is False
    with pytest.raises(StoreUnavailable):
        _store(app).ensure_ready()
    client = app.test_client()
    assert client.get("/api/health").json == {"status": "ok", "release": client.get("/api/health").json["release"],
                                              "store": "dynamodb", "store_ready": False}
    assert client.get("/api/products").status_code == 503


# --------------------------------------------------------------------------- TLS

@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_database_tls_require_connects_encrypted(engine, request):
    server = request.getfixturevalue("postgres_server" if engine == "postgres" else "mariadb_server")
    env = {**server.env(engine, server.new_database()), "DATABASE_TLS": "require"}
    app = _app(env)
    assert app.test_client().get("/api/products").json["count"] == 10
    with _store(app).transaction() as cur:
        if engine == "postgres":
            cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert cur.fetchone()[0] is True
        else:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert cur.fetchone()[1]  # a cipher: the session is encrypted


def test_redis_tls_verifies_the_server_and_carries_the_cart(redis_tls_server, monkeypatch):
    # ElastiCache's certificate chains to a public CA in the system store; here the
    # test CA stands in for it through OpenSSL's SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(redis_tls_server.extra["certs"]["ca"]))
    env = {"REDIS_HOST": redis_tls_server.host, "REDIS_PORT": str(redis_tls_server.port), "REDIS_TLS": "1",
           "REDIS_PASSWORD": redis_tls_server.extra["password"]}
    client = _app(env).test_client()
    assert client.post("/api/cart", json={"productId": "merino-rib-beanie", "add": 2}).json["itemCount"] == 2
    assert redis_tls_server.extra["client"].keys("stylesphere:cart:*")
    assert client.post("/api/orders").status_code == 201

    monkeypatch.delenv("SSL_CERT_FILE")  # an unknown CA: refused, as a man in the middle would be
    stranger = _app(env).test_client()
    assert stranger.post("/api/cart", json={"productId": "merino-rib-beanie"}).status_code == 503


def test_a_pooled_connection_the_server_closed_is_replaced_not_failed(postgres_server, monkeypatch):
    import stylesphere_api.stores.sql as sql

    database = postgres_server.new_database()
    app = _app(postgres_server.env("postgres", database))
    client = app.test_client()
    assert client.get("/api/products").status_code == 200
    # The server drops the idle connection (a restart, an RDS failover, an idle timeout).
    postgres_server.extra["admin"](
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
    monkeypatch.setattr(sql, "_CHECK_AFTER_IDLE", 0.0)
    assert client.get("/api/products").status_code == 200


def test_an_unreadable_secret_is_503_and_health_stays_up(aws, postgres_server):
    env = {**postgres_server.env("postgres", postgres_server.new_database()), "DATABASE_PASSWORD": "",
           "DATABASE_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:absent-AbCdEf",
           "AWS_REGION": "eu-west-1"}
    app = _app(env)
    client = app.test_client()
    assert client.get("/api/health").json["store_ready"] is False
    r = client.get("/api/products")
    assert r.status_code == 503 and r.json["error"] == "store unavailable"


@pytest.mark.parametrize("engine", ["postgres", "mariadb"])
def test_seeding_from_processes_starting_together(engine, request):
    import os
    import subprocess
    import sys

    from app_test_support import BACKEND

    server = request.getfixturevalue("postgres_server" if engine == "postgres" else "mariadb_server")
    env = {**os.environ, **server.env(engine, server.new_database()), "PYTHONPATH": str(BACKEND)}
    script = ("import threading, time; from stylesphere_api import create_app; "
              "from stylesphere_api.settings import Settings; "
              "time.sleep(max(0.0, float(__import__('sys').argv[1]) - time.time())); "
              "create_app(settings=Settings.from_env(), background_start=False)")
    start_at = str(time.time() + 1.5)  # both past their imports, then at once
    procs = [subprocess.Popen([sys.executable, "-c", script, start_at], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(3)]
    outputs = [p.communicate(timeout=60)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    app = _app(server.env(engine, env["DATABASE_NAME"]))
    assert len(_store(app).products()) == 10
