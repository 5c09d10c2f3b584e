"""The console's ASGI app without a browser: page shells, assets, headers, and the sign-in cookie route."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from huddle.ui import CONTENT_SECURITY_POLICY, console_app
from huddle.ui.app import STATIC_DIR, TEMPLATES_DIR

PAGES = ["/ui/", "/ui/sessions/s-1", "/ui/replays", "/ui/replays/r-1", "/ui/health", "/ui/login"]
UI_DIR = STATIC_DIR.parent
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = Starlette(routes=[Mount("/ui", console_app())])
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_html_with_the_strict_csp(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"


def test_static_assets_carry_the_csp_and_javascript_mime_type(client: TestClient) -> None:
    response = client.get("/ui/static/js/pages/session.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]  # module scripts need a JS MIME type
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_page_shells_do_not_reflect_the_url(client: TestClient) -> None:
    body = client.get("/ui/sessions/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E").text
    assert "<img" not in body and "onerror" not in body


def test_templates_hold_no_inline_script_style_or_handlers() -> None:
    for template in TEMPLATES_DIR.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert not re.search(r"<style\b|\sstyle=", text), template.name
        assert not re.search(r"\son[a-z]+=", text, re.IGNORECASE), template.name


def test_scripts_never_write_markup_from_strings() -> None:
    for script in STATIC_DIR.rglob("*.js"):
        text = script.read_text()
        for sink in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert sink not in text, f"{script.name} uses {sink}"


def test_every_referenced_asset_and_module_import_exists(client: TestClient) -> None:
    for template in TEMPLATES_DIR.glob("*.html"):
        for ref in re.findall(r'\$ui/(static/[^"]+)', template.read_text()):
            if "$page" in ref:
                for page in ("sessions", "session", "replays", "replay", "health", "login"):
                    assert client.get("/ui/" + ref.replace("$page", page)).status_code == 200
            else:
                assert client.get("/ui/" + ref).status_code == 200, ref
    for script in STATIC_DIR.rglob("*.js"):
        for target in re.findall(r'^import .* from "(\.[^"]+)";$', script.read_text(), re.MULTILINE):
            assert (script.parent / target).resolve().is_file(), f"{script.name} imports missing {target}"


def test_every_console_file_ships_in_the_wheel() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "huddle"
    ]
    package = UI_DIR.parent
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    for path in UI_DIR.rglob("*"):
        if path.is_file() and path.suffix != ".py" and "__pycache__" not in path.parts:
            assert path in shipped, f"{path.relative_to(package)} is not in package-data"


def test_the_api_root_follows_the_mount_point() -> None:
    nested = Starlette(routes=[Mount("/tools/huddle/ui", console_app())])
    with TestClient(nested) as test_client:
        body = test_client.get("/tools/huddle/ui/").text
    assert '<meta name="huddle-api" content="/tools/huddle">' in body
    assert 'src="/tools/huddle/ui/static/js/pages/sessions.js"' in body
    explicit = Starlette(routes=[Mount("/ui", console_app(api_root="/api"))])
    with TestClient(explicit) as test_client:
        assert '<meta name="huddle-api" content="/api">' in test_client.get("/ui/health").text


def test_sign_in_sets_an_httponly_strict_cookie_and_returns_to_the_page(client: TestClient) -> None:
    response = client.post(
        "/ui/login", data={"token": "observer-secret", "next": "/ui/sessions/s-1"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/sessions/s-1"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("huddle_token=observer-secret;")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/;" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never be sent back


def test_sign_in_over_https_marks_the_cookie_secure() -> None:
    app = Starlette(routes=[Mount("/ui", console_app())])
    with TestClient(app, base_url="https://testserver") as test_client:
        response = test_client.post("/ui/login", data={"token": "t"}, follow_redirects=False)
    assert "Secure" in response.headers["set-cookie"]


@pytest.mark.parametrize(
    "target", ["https://evil.example/ui/", "//evil.example/ui/", "/elsewhere", "/ui\\..\\x"]
)
def test_sign_in_never_redirects_out_of_the_console(client: TestClient, target: str) -> None:
    response = client.post("/ui/login", data={"token": "t", "next": target}, follow_redirects=False)
    assert response.headers["location"] == "/ui/"


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
def test_cross_site_sign_in_is_refused(client: TestClient, origin: str) -> None:
    response = client.post(
        "/ui/login", data={"token": "t"}, headers={"origin": origin}, follow_redirects=False
    )
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_an_empty_token_or_sign_out_clears_the_cookie(client: TestClient) -> None:
    for response in (
        client.post("/ui/login", data={"token": ""}, follow_redirects=False),
        client.post("/ui/logout", follow_redirects=False),
    ):
        assert response.status_code == 303
        assert (
            'huddle_token=""' in response.headers["set-cookie"]
            or "Max-Age=0" in response.headers["set-cookie"]
        )
