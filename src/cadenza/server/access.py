"""Which browsers' requests the server answers: the Host check and the Origin check.

A server on loopback with no token is safe only if other web pages in the same browser
cannot use it. Two checks, in ``AccessGuard`` (an ASGI middleware around the whole app, so
they run before any route, the token check and the pages):

- **Host** (against DNS rebinding: a site whose name is re-pointed at 127.0.0.1 becomes
  same-origin with the server). On a loopback bind only ``127.0.0.1``, ``localhost`` and
  ``[::1]`` (any port), the bound address, and the names given with ``--allow-host`` are
  answered; any other Host gets 400. On other binds the token guards the server, and Host
  is checked only when ``--allow-host`` is given.
- **Origin** (against cross-site requests; browsers apply no CORS to WebSockets). A
  WebSocket whose ``Origin`` is neither the server's own (its host and port are the Host
  header's) nor one given with ``--allow-origin`` is closed with 4403 and a reason; a POST,
  PUT, PATCH or DELETE from such an origin gets 403. A request without ``Origin`` comes
  from a script, not a page, and is served as before.

Every refusal says in one sentence what to pass. Plain ASGI with no dependency: Starlette's
``TrustedHostMiddleware`` checks Host (also on WebSockets, in Starlette 1.x) but answers
"Invalid host header" in plain text and knows nothing of Origin.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass

from cadenza.errors import ConfigError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ORIGIN_RE = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s]+$")
NAME_RE = re.compile(r"^(\*\.)?[a-z0-9_.-]+$")
CLOSE_REASON_BYTES = 123      # the WebSocket protocol's limit on a close reason


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _shown(name: str) -> str:
    return f"[{name}]" if ":" in name else name


def host_name(header: str | None) -> str | None:
    """The name in a Host header (lowercase, an IPv6 address without brackets, no port), or
    None when there is none or it is malformed."""
    if not header:
        return None
    value = header.strip().lower()
    if value.startswith("["):
        name, sep, rest = value[1:].partition("]")
        if not sep or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
        return name
    name, colon, port = value.partition(":")
    if not name or (colon and not port.isdigit()):
        return None
    return name


def _clip(text: str, n: int = 80) -> str:
    """An untrusted header value, safe and short enough to quote in a refusal."""
    text = "".join(c if " " < c < "\x7f" else "?" for c in text)
    return text if len(text) <= n else text[:n - 3] + "..."


@dataclass(frozen=True)
class Access:
    """The Host names answered and the Origins allowed besides the server's own.

    ``hosts``: the names answered (``*.example.org`` takes every subdomain); None answers
    any Host. ``origins``: pages allowed to open streams and send POST/DELETE, as
    ``scheme://host[:port]``; ``*`` allows any. The default is a loopback server's."""

    hosts: tuple[str, ...] | None = LOOPBACK_NAMES
    origins: tuple[str, ...] = ()

    def __post_init__(self):
        if self.hosts is not None:
            hosts = []
            for h in self.hosts:
                name = str(h).strip().lower()
                if name.startswith("[") and name.endswith("]"):
                    name = name[1:-1]
                if name == "*":
                    hosts = None
                    break
                if ":" in name:
                    try:
                        ipaddress.IPv6Address(name)
                    except ValueError:
                        raise ConfigError(f"--allow-host takes a host name without a port or scheme, like "
                                          f"studio.lan or 192.168.1.20, not {h!r}") from None
                elif not NAME_RE.match(name):
                    raise ConfigError(f"--allow-host takes a host name (or *.domain for its subdomains), not {h!r}")
                if name not in hosts:
                    hosts.append(name)
            object.__setattr__(self, "hosts", None if hosts is None else tuple(hosts))
        origins = []
        for o in self.origins:
            origin = str(o).strip().lower().rstrip("/")
            if origin != "*" and not ORIGIN_RE.match(origin):
                raise ConfigError(f"--allow-origin takes an origin as a browser sends it, scheme://host[:port] with "
                                  f"no path (like http://localhost:3000), or *, not {o!r}")
            if origin not in origins:
                origins.append(origin)
        object.__setattr__(self, "origins", tuple(origins))

    @classmethod
    def serving(cls, bind: str, allow_hosts=(), allow_origins=()) -> Access:
        """What ``cadenza serve --host BIND`` answers: on loopback the loopback names, the
        bound address and ``allow_hosts``; elsewhere any Host unless ``allow_hosts`` is given
        (then those, the loopback names and the bound address)."""
        allow_hosts = tuple(allow_hosts)
        if not is_loopback(bind) and not allow_hosts:
            return cls(None, tuple(allow_origins))
        own = () if _is_unspecified(bind) else (bind,)
        return cls(LOOPBACK_NAMES + own + allow_hosts, tuple(allow_origins))

    # ---- the checks ---------------------------------------------------------------------
    def host_problem(self, header: str | None) -> str | None:
        """None if a request with this Host header is answered, else why not (one sentence)."""
        if self.hosts is None:
            return None
        name = host_name(header)
        if name is not None and any(name == h or (h.startswith("*.") and name.endswith(h[1:])) for h in self.hosts):
            return None
        names = ", ".join(_shown(h) for h in self.hosts)
        if name is None:
            return (f"this request has no usable Host header ({_clip(header or 'none')}); this server answers only "
                    f"requests addressed to {names}")
        return (f"this server answers only requests addressed to {names}, not to {_clip(_shown(name))}: if you "
                f"reach it by that name, start it with --allow-host {_clip(_shown(name))}")

    def origin_allowed(self, origin: str, host_header: str | None) -> bool:
        """Whether a page at ``origin`` may use the server reached as ``host_header``: its
        own pages (the same host and port) and the allowed origins may."""
        origin = origin.strip().lower().rstrip("/")
        if "*" in self.origins or origin in self.origins:
            return True
        _, sep, netloc = origin.partition("://")
        return bool(sep) and host_header is not None and netloc == host_header.strip().lower()

    def lines(self) -> list[str]:
        """The checks in words, as ``cadenza serve`` prints them at start."""
        if self.hosts is None:
            hosts = "hosts: any name (the token guards this address; --allow-host limits the names)"
        else:
            hosts = (f"hosts: {', '.join(_shown(h) for h in self.hosts)} (any other Host gets 400; "
                     f"add a name with --allow-host)")
        if "*" in self.origins:
            origins = "origins: any page may open streams and send POST/DELETE (--allow-origin *)"
        else:
            origins = ("origins: pages from this server" + "".join(f", {o}" for o in self.origins) +
                       " may open streams and send POST/DELETE (add one with --allow-origin)")
        return [hosts, origins]


def origin_refusal(origin: str, method: str | None = None) -> str:
    """The one sentence a page from a foreign ``origin`` gets: for an HTTP ``method``, or,
    with no method, as a WebSocket close reason (at most 123 bytes)."""
    shown = _clip(origin, 200)
    if ORIGIN_RE.match(origin.strip().lower().rstrip("/")):
        fix = f"start the server with --allow-origin {shown}"
    else:       # "null": a page opened from a file, or sandboxed
        fix = "serve the page from a web server and pass its origin to --allow-origin"
    if method is not None:
        return f"this server takes no {method} requests from pages at {shown}: to allow them, {fix}"
    reason = f"streams from pages at {shown} are refused: {fix}"
    if len(reason.encode()) > CLOSE_REASON_BYTES:
        reason = "streams from other sites' pages are refused: start the server with --allow-origin ORIGIN"
    return reason


class AccessGuard:
    """ASGI middleware: the Host check (400) and the Origin check (403, or close 4403) before the app."""

    def __init__(self, app, access: Access):
        self.app, self.access = app, access

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = origin = None
        for key, value in scope.get("headers", ()):
            if key == b"host" and host is None:
                host = value.decode("latin-1")
            elif key == b"origin" and origin is None:
                origin = value.decode("latin-1")
        problem = self.access.host_problem(host)
        if problem is not None:
            return await self._refuse(scope, receive, send, 400, problem)
        if origin is None or self.access.origin_allowed(origin, host):
            return await self.app(scope, receive, send)
        if kind == "websocket":
            return await self._close(receive, send, 4403, origin_refusal(origin))
        if scope["method"] in STATE_CHANGING:
            return await self._refuse(scope, receive, send, 403, origin_refusal(origin, scope["method"]))
        return await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope, receive, send, status: int, detail: str) -> None:
        """An HTTP answer with ``{"detail": sentence}``; to a WebSocket handshake too, where the
        ASGI server can send one (else the handshake is refused with 403)."""
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        prefix = ""
        if scope["type"] == "websocket":
            await receive()                       # websocket.connect
            if "websocket.http.response" not in scope.get("extensions", {}):
                await send({"type": "websocket.close", "code": 1008, "reason": detail[:100]})
                return
            prefix = "websocket."
        await send({"type": prefix + "http.response.start", "status": status, "headers": headers})
        await send({"type": prefix + "http.response.body", "body": body})

    @staticmethod
    async def _close(receive, send, code: int, reason: str) -> None:
        """Accept and close at once: the page sees ``code`` and the ``reason`` (a refused
        handshake would show it neither), and no message reaches the app."""
        await receive()                           # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": code, "reason": reason})
