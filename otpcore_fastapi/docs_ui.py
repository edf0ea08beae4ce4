"""Swagger UI at ``/docs`` with no CDN: its assets served by the application itself.

FastAPI's default ``/docs`` page loads Swagger UI's script, stylesheet and icon from public
CDNs, so it is blank on a machine without internet. :func:`offline_docs` serves the same
page with the Swagger UI files that the ``fastapi-offline`` package ships (installed with
``otpcore[fastapi]``), mounted under the application.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["offline_docs", "swagger_ui_assets"]

ASSET_FILES: Final = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")


def swagger_ui_assets() -> Path:
    """The directory holding Swagger UI's ``swagger-ui-bundle.js``, ``swagger-ui.css`` and
    ``favicon.png``.

    Raises:
        RuntimeError: The package that ships them is missing or lacks a file.
    """
    try:
        # fastapi-offline keeps the files as package data in ``static/``, next to its code.
        directory = Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        raise RuntimeError(
            "offline API docs need the Swagger UI files from fastapi-offline: "
            "pip install 'otpcore[fastapi]'"
        ) from None
    missing = [name for name in ASSET_FILES if not (directory / name).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline's static files lack {', '.join(missing)}")
    return directory


def offline_docs(
    app: FastAPI,
    *,
    docs_url: str = "/docs",
    assets_url: str = "/_otpcore/swagger-ui",
    swagger_ui_parameters: dict[str, Any] | None = None,
) -> None:
    """Serve Swagger UI at ``docs_url`` from files served under ``assets_url``; no CDN.

    Create the app with ``FastAPI(docs_url=None, redoc_url=None)`` (ReDoc loads from a CDN
    too) and call this once. The page loads only same-origin URLs; Swagger UI's online
    validator badge is turned off, since it would call a third-party server.

    Args:
        app: The application; its ``openapi_url`` must be set.
        docs_url: Where the page is served.
        assets_url: Where the Swagger UI files are mounted.
        swagger_ui_parameters: Extra Swagger UI settings, over ``app.swagger_ui_parameters``.

    Raises:
        ValueError: The app already serves FastAPI's CDN ``/docs`` or has no OpenAPI URL.
        RuntimeError: The Swagger UI files are not installed.
    """
    if app.docs_url is not None:
        raise ValueError(
            "create the app with FastAPI(docs_url=None) so that offline_docs serves /docs "
            "instead of FastAPI's CDN page"
        )
    if app.openapi_url is None:
        raise ValueError("offline_docs needs the OpenAPI schema: the app has openapi_url=None")
    openapi_url = app.openapi_url
    parameters: dict[str, Any] = {"validatorUrl": None}
    parameters.update(app.swagger_ui_parameters or {})
    parameters.update(swagger_ui_parameters or {})
    redirect_url = app.swagger_ui_oauth2_redirect_url
    assets = assets_url.rstrip("/")
    app.mount(assets, StaticFiles(directory=swagger_ui_assets()), name="otpcore-swagger-ui")

    async def swagger_ui(request: Request) -> HTMLResponse:
        # Behind a proxy that strips a prefix, every URL needs that prefix back.
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets}/favicon.png",
            oauth2_redirect_url=root + redirect_url if redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=parameters,
        )

    app.add_route(docs_url, swagger_ui, include_in_schema=False)
    if redirect_url:

        async def oauth2_redirect(_: Request) -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

        app.add_route(redirect_url, oauth2_redirect, include_in_schema=False)
