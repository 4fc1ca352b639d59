"""The storefront's `npm ci` and production build (standalone output) succeed."""

import json

from app_test_support import FRONTEND


def test_production_build_has_standalone_output(frontend_build):
    assert (frontend_build / "server.js").is_file()
    assert (frontend_build / "node_modules" / "next").is_dir()
    static = FRONTEND / ".next" / "static"
    assert any(static.rglob("*.js")), "no client chunks were built"
    assert any(static.rglob("*.css")), "no stylesheet was built"
    routes = json.loads((FRONTEND / ".next" / "app-path-routes-manifest.json").read_text())
    paths = set(routes.values())
    assert {"/", "/products/[id]", "/healthz", "/cart", "/orders/[id]"} <= paths, paths


def test_build_output_references_no_external_hosts(frontend_build):
    # Fonts, scripts and styles must all come from the app itself.
    for f in (FRONTEND / ".next" / "static" / "css").rglob("*.css"):
        css = f.read_text()
        assert "fonts.googleapis" not in css and "@import url(http" not in css, f
