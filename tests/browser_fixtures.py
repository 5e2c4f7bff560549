"""What the real-browser tests share: Debian's chromium (required: skipped locally, a failure
under CI=true), the app served by uvicorn on a free loopback port, and a page whose every
request must go to that server's origin."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import in_ci, require

sync_api = require("playwright.sync_api", "pip install playwright (the dev extra); never `playwright install`")
uvicorn = require("uvicorn", "the server's dependency")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
    "--disable-audio-output", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[1]


def require_chromium() -> None:
    """Skip the calling test module where Debian's chromium is missing (fail under CI=true)."""
    if not os.access(CHROMIUM, os.X_OK):
        why = f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (apt-get install chromium)"
        if in_ci():
            pytest.fail(f"CI=true and a test dependency is missing: {why}", pytrace=False)
        pytest.skip(why, allow_module_level=True)


def state(page, expr: str = "window.cadenza.debug.state"):
    """A page value as plain JSON (by default the page's test probe, ``window.cadenza.debug.state``)."""
    return page.evaluate(f"() => JSON.parse(JSON.stringify({expr}))")


@contextlib.contextmanager
def listen_page(origin: str, path: str, wait_for):
    """The listening page at ``path`` in a fresh chromium, once its stream said ready; on the way
    out, checks that no request left 127.0.0.1 and the page logged no error."""
    with chromium_browser() as chromium:
        context, pg = open_page(chromium, origin, path, sockets=True)
        wait_for(pg, "window.cadenza && window.cadenza.debug.state.connected", 20, "the stream's ready message")
        yield pg
        assert pg.foreign == [], f"requests that left 127.0.0.1: {pg.foreign}"
        assert state(pg, "window.cadenza.debug.state.errors") == []
        context.close()


@contextlib.contextmanager
def serving(app):
    """Run ``app`` under uvicorn in a background thread on a free loopback port; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the server did not start within 30 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def page_server(model, folder: Path):
    """``cadenza serve``'s app over ``model`` with its preferences in ``folder``, running;
    yields {"url", "prefs"}."""
    from cadenza.server.app import create_app

    prefs = folder / "prefs.sqlite3"
    with serving(create_app(prefs_path=prefs, mm=model)) as url:
        yield {"url": url, "prefs": prefs}


def shipped_model():
    import torch

    from cadenza.music.load import load_model

    torch.set_num_threads(1)
    return load_model(None)  # the shipped default model


@contextlib.contextmanager
def chromium_browser():
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def open_page(chromium, origin: str, path: str, viewport: tuple = (1280, 760), init_script: str | None = None,
              sockets: bool = False):
    """(context, page) at ``origin + path``. Requests to any other origin are refused and listed in
    ``page.foreign`` (WebSockets too: those go elsewhere, or anywhere when ``sockets`` is false);
    page errors and console errors are listed in ``page.problems``."""
    foreign: list[str] = []
    problems: list[str] = []

    def guard(route):
        url = route.request.url
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" == origin or parts.scheme in ("data", "blob"):
            route.continue_()
        else:
            foreign.append(url)
            route.abort()

    context = chromium.new_context(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
    context.route("**/*", guard)     # a WebSocket does not pass through route(): watched below
    if init_script:
        context.add_init_script(init_script)
    pg = context.new_page()
    ws_origin = origin.replace("http", "ws", 1) + "/"
    pg.on("websocket", lambda ws: None if sockets and ws.url.startswith(ws_origin) else foreign.append(ws.url))
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    pg.foreign, pg.problems = foreign, problems
    pg.goto(origin + path)
    return context, pg
