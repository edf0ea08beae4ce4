"""``offline_docs``: /docs and its Swagger UI assets come from the app, never from a CDN."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from otpcore_fastapi.docs_ui import offline_docs


def _app(**options: object) -> FastAPI:
    app = FastAPI(title="docs", docs_url=None, redoc_url=None, **options)  # type: ignore[arg-type]

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def _get(app: FastAPI, path: str, root_path: str = "") -> httpx.Response:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(root_path + path)


async def test_docs_page_references_only_local_assets_that_are_served() -> None:
    app = _app()
    offline_docs(app)
    page = await _get(app, "/docs")
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(urls) == [
        "/_otpcore/swagger-ui/favicon.png",
        "/_otpcore/swagger-ui/swagger-ui-bundle.js",
        "/_otpcore/swagger-ui/swagger-ui.css",
    ]
    assert "url: '/openapi.json'" in page.text
    assert '"validatorUrl": null' in page.text  # no call to the online validator
    for url in urls:
        asset = await _get(app, url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100
    schema = (await _get(app, "/openapi.json")).json()
    assert "/docs" not in schema["paths"]
    assert not any(path.startswith("/_otpcore") for path in schema["paths"])


async def test_urls_keep_the_proxy_prefix() -> None:
    app = _app()
    offline_docs(app, assets_url="/static/swagger/")
    page = await _get(app, "/docs", root_path="/api")
    assert 'src="/api/static/swagger/swagger-ui-bundle.js"' in page.text
    assert "url: '/api/openapi.json'" in page.text


async def test_oauth2_redirect_page_is_served() -> None:
    app = _app()
    offline_docs(app)
    redirect = await _get(app, "/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert "oauth2" in redirect.text.lower()


def test_an_app_still_serving_the_cdn_page_is_refused() -> None:
    with pytest.raises(ValueError, match="docs_url=None"):
        offline_docs(FastAPI())


def test_an_app_without_a_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="openapi_url=None"):
        offline_docs(_app(openapi_url=None))
