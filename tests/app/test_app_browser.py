"""End to end in headless Chromium: the storefront and the API on loopback behind
a router that applies the ALB listener rule (/api/* to the backend, the rest to
the frontend). Screenshots go to tests/artifacts/."""

from __future__ import annotations

import os
import shutil
import tempfile
from urllib.parse import urlparse

import pytest

from app_test_support import ARTIFACTS, require

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _first(paths, name):
    for p in paths:
        if os.path.exists(p):
            return p
    return shutil.which(name)


@pytest.fixture(scope="module")
def browser():
    chromium = _first(CHROMIUM_CANDIDATES, "chromium")
    chromedriver = _first(CHROMEDRIVER_CANDIDATES, "chromedriver")
    require(chromium is not None, "chromium is not installed (apt-get install chromium chromium-driver)")
    require(chromedriver is not None, "chromedriver is not installed (apt-get install chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "selenium is not installed (pip install selenium)")

    profile = tempfile.mkdtemp(prefix="stylesphere-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition, timeout=20, message=""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition, message)


def _cards(driver):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "[data-testid=product-card]")


def _api_calls(driver):
    """Resource timing entries: what the Network tab would show for /api."""
    names = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    return [urlparse(n).path + ("?" + urlparse(n).query if urlparse(n).query else "")
            for n in names if urlparse(n).path.startswith("/api/")]


def _images_loaded(driver):
    return driver.execute_script(
        "const imgs = [...document.querySelectorAll('[data-testid=product-card] img')];"
        "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);")


def _full_screenshot(driver, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height) + 40, 800), 4000))
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    return path


def test_home_filter_and_product_page(stack, browser):
    from selenium.webdriver.common.by import By

    stack.backend_down = False
    browser.get(stack.url + "/")
    _wait(browser, lambda d: len(_cards(d)) >= 8, message="product cards never rendered")
    assert "StyleSphere" in browser.title
    total = len(_cards(browser))
    assert "/api/products" in _api_calls(browser)
    assert "/api/products" in stack.requests
    _wait(browser, lambda d: _images_loaded(d), message="product images did not load")
    names = [c.find_element(By.CSS_SELECTOR, ".card-title").text for c in _cards(browser)]
    assert "Organic Cotton Crew Tee" in names
    prices = [c.find_element(By.CSS_SELECTOR, ".card-price").text for c in _cards(browser)]
    assert all("€" in p for p in prices), prices
    shot = _full_screenshot(browser, "stylesphere-home.png")
    assert shot.stat().st_size > 10_000

    # Filter by category with the chips.
    browser.find_element(By.CSS_SELECTOR, "[data-testid=category-chip][data-category=outerwear]").click()
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=product-grid]").get_attribute("data-category") == "outerwear"
          and d.find_element(By.CSS_SELECTOR, "[data-testid=product-grid]").get_attribute("data-status") == "ready",
          message="category filter was not applied")
    cards = _cards(browser)
    assert 0 < len(cards) < total
    assert {c.get_attribute("data-category") for c in cards} == {"outerwear"}
    assert browser.current_url.endswith("/?category=outerwear")
    assert "/api/products?category=outerwear" in _api_calls(browser)
    active = browser.find_element(By.CSS_SELECTOR, ".chip-active")
    assert active.get_attribute("data-category") == "outerwear"
    _full_screenshot(browser, "stylesphere-filter-outerwear.png")

    # Open a product page.
    first = cards[0]
    title = first.find_element(By.CSS_SELECTOR, ".card-title").text
    first.find_element(By.CSS_SELECTOR, "a").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=product-detail]"),
          message="product page did not render")
    assert "/products/" in browser.current_url
    detail = browser.find_element(By.CSS_SELECTOR, "[data-testid=product-detail]")
    assert detail.find_element(By.CSS_SELECTOR, "h1").text == title
    assert detail.find_element(By.CSS_SELECTOR, "[data-testid=sustainability]").text
    product_id = detail.get_attribute("data-product-id")
    assert f"/api/products/{product_id}" in _api_calls(browser)
    _wait(browser, lambda d: d.execute_script(
        "const i = document.querySelector('.detail-image img'); return i && i.complete && i.naturalWidth > 0"))
    _full_screenshot(browser, "stylesphere-product.png")

    # Back link returns to the full catalogue.
    browser.find_element(By.CSS_SELECTOR, "[data-testid=back-link]").click()
    _wait(browser, lambda d: len(_cards(d)) == total, message="back link did not show all products")


def test_deep_links(stack, browser):
    from selenium.webdriver.common.by import By

    stack.backend_down = False
    browser.get(stack.url + "/products/tencel-wrap-dress")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=product-detail]"))
    assert browser.find_element(By.CSS_SELECTOR, "h1").text == "Tencel Wrap Dress"

    browser.get(stack.url + "/products/no-such-thing")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=product-missing]"),
          message="unknown product did not show a not-found message")

    browser.get(stack.url + "/?category=dresses")
    _wait(browser, lambda d: _cards(d) and {c.get_attribute("data-category") for c in _cards(d)} == {"dresses"})

    browser.get(stack.url + "/?category=sandals")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=unknown-category]"))
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=category-chip]")


def test_api_down_shows_a_clear_message_and_recovers(stack, browser):
    from selenium.webdriver.common.by import By

    stack.backend_down = True
    try:
        browser.get(stack.url + "/")
        banner = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=api-error]"),
                       message="no API-down banner")[0]
        assert "API" in banner.text and "try again" in banner.text.lower()
        assert browser.find_element(By.CSS_SELECTOR, "header").text  # the page is not blank
        _full_screenshot(browser, "stylesphere-api-down.png")

        browser.get(stack.url + "/products/organic-cotton-tee")
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=api-error]"))
        assert browser.find_element(By.CSS_SELECTOR, "[data-testid=back-link]")
    finally:
        stack.backend_down = False

    browser.find_element(By.CSS_SELECTOR, "[data-testid=api-error] button").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=product-detail]"),
          message="retry did not recover once the API was back")


def test_small_screen_layout_has_no_horizontal_scroll(stack, browser):
    stack.backend_down = False
    browser.set_window_size(390, 844)
    try:
        browser.get(stack.url + "/")
        _wait(browser, lambda d: len(_cards(d)) >= 8)
        # The cards' images are loading="lazy": on a small screen the last rows are below the
        # fold, and Chrome's distance for loading them ahead shrinks on a busy machine. Scrolled
        # past, they load as a visitor's would.
        browser.execute_script("window.scrollTo(0, document.documentElement.scrollHeight)")
        _wait(browser, lambda d: _images_loaded(d))
        browser.execute_script("window.scrollTo(0, 0)")
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")
        columns = browser.execute_script(
            "return getComputedStyle(document.querySelector('[data-testid=product-grid]'))"
            ".gridTemplateColumns.split(' ').length")
        assert columns == 2
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "stylesphere-mobile.png"))
    finally:
        browser.set_window_size(1280, 1000)


def test_cart_checkout_and_order_on_postgres(postgres_stack, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    stack = postgres_stack
    store = stack.app.extensions["stylesphere"]["store"]
    assert store.name == "postgres"
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # the /api cookie too
    browser.get(stack.url + "/")
    _wait(browser, lambda d: len(_cards(d)) >= 8, message="product cards never rendered")

    # Add from a card on the home page.
    card = next(c for c in _cards(browser)
                if c.find_element(By.CSS_SELECTOR, ".card-title").text == "Organic Cotton Crew Tee")
    card.find_element(By.CSS_SELECTOR, "[data-testid=add-button]").click()
    _wait(browser, lambda d: "In your cart: 1" in card.find_element(By.CSS_SELECTOR, "[data-testid=add-status]").text,
          message="adding from the card did not confirm")
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=cart-count]").text.strip() == "1")
    # The cart cookie is scoped to /api, so the page's own cookie list does not show it.
    cookie = next(c for c in browser.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
                  if c["name"] == "stylesphere_cart")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/api"

    # Add two from a product page, then ask for more than the limit allows.
    browser.get(stack.url + "/products/linen-camp-shirt")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=product-detail]"))
    Select(browser.find_element(By.CSS_SELECTOR, "[data-testid=add-quantity]")).select_by_value("2")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=add-button]").click()
    status = lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=add-status]").text  # noqa: E731
    _wait(browser, lambda d: "In your cart: 2" in status(d), message="adding from the product page failed")
    Select(browser.find_element(By.CSS_SELECTOR, "[data-testid=add-quantity]")).select_by_value("9")
    browser.find_element(By.CSS_SELECTOR, "[data-testid=add-button]").click()
    _wait(browser, lambda d: "Quantity limit" in status(d), message="the limit's error was not shown")
    assert "at most 10" in status(browser)

    # The cart page: change a quantity, remove a line.
    browser.get(stack.url + "/products/canvas-market-tote")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=add-button]"))
    browser.find_element(By.CSS_SELECTOR, "[data-testid=add-button]").click()
    _wait(browser, lambda d: "In your cart: 1" in status(d))
    browser.find_element(By.CSS_SELECTOR, "[data-testid=cart-link]").click()
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=cart-line]")) == 3,
          message="the cart page did not list three lines")

    def line(d, product_id):
        return d.find_element(By.CSS_SELECTOR, f"[data-testid=cart-line][data-product-id={product_id}]")

    Select(line(browser, "organic-cotton-tee").find_element(By.CSS_SELECTOR, "select")).select_by_value("3")
    _wait(browser, lambda d: "87.00" in line(d, "organic-cotton-tee").find_element(
        By.CSS_SELECTOR, "[data-testid=line-total]").text, message="the quantity change did not apply")
    line(browser, "canvas-market-tote").find_element(By.CSS_SELECTOR, "[data-testid=remove-line]").click()
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid=cart-line]")) == 2)
    total = browser.find_element(By.CSS_SELECTOR, "[data-testid=cart-total]").text
    assert "215.00" in total, total  # 3 x 29 + 2 x 64
    assert dict(store.cart(cookie["value"])) == {"organic-cotton-tee": 3, "linen-camp-shirt": 2}
    _full_screenshot(browser, "stylesphere-cart.png")

    # Checkout: the order page shows the placed order, and PostgreSQL holds it.
    browser.find_element(By.CSS_SELECTOR, "[data-testid=checkout]").click()
    order_el = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=order]"),
                     message="the order page did not show the order")[0]
    order_id = order_el.get_attribute("data-order-id")
    assert browser.current_url.endswith(f"/orders/{order_id}")
    assert "215.00" in browser.find_element(By.CSS_SELECTOR, "[data-testid=order-total]").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "[data-testid=order-line]")) == 2
    stored = store.order(order_id)
    assert stored["totalCents"] == 21500 and stored["owner"] == cookie["value"]
    assert store.cart(cookie["value"]) == []
    _full_screenshot(browser, "stylesphere-order.png")

    browser.find_element(By.CSS_SELECTOR, "[data-testid=receipt-link]").click()
    _wait(browser, lambda d: order_id in d.find_element(By.TAG_NAME, "body").text)
    assert "Organic Cotton Crew Tee" in browser.find_element(By.TAG_NAME, "body").text

    browser.get(stack.url + "/cart")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=cart-empty]"),
          message="the cart was not empty after the order")

    # Another browser (no cookie) does not see the order.
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.get(stack.url + f"/orders/{order_id}")
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=order-missing]"))
