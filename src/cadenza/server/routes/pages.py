"""The pages ``cadenza serve`` serves: home, /listen, /studio, and the API reference at /docs
(Swagger UI) and /redoc (ReDoc), each from files in ``static/`` (the vendored builds are in
``static/vendor``, see its VENDOR.md), so no page loads anything from another host."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parents[1] / "static"
FAVICON = "/static/favicon.svg"


def add_pages(app: FastAPI) -> None:
    """Mount ``/static`` and add the page routes (none of them in the OpenAPI schema).
    The app is made with ``docs_url=None, redoc_url=None``: these routes replace FastAPI's,
    which load Swagger UI, ReDoc, a favicon and Google Fonts from the internet."""
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    def page(path: str, file: str) -> None:
        @app.get(path, include_in_schema=False, name=file)
        async def serve():
            return FileResponse(STATIC / f"{file}.html")

    page("/", "index")
    page("/listen", "listen")
    page("/studio", "studio")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/docs", include_in_schema=False)
    async def swagger():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} · API",
                                   swagger_js_url="/static/vendor/swagger-ui-bundle.js",
                                   swagger_css_url="/static/vendor/swagger-ui.css", swagger_favicon_url=FAVICON,
                                   swagger_ui_parameters={"validatorUrl": None})   # no badge from swagger.io

    @app.get("/redoc", include_in_schema=False)
    async def redoc():
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} · API",
                              redoc_js_url="/static/vendor/redoc.standalone.js", redoc_favicon_url=FAVICON,
                              with_google_fonts=False)
