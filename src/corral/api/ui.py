"""The web dashboard's files, served at ``/ui/`` by the API itself (no CDN, no build step).

The dashboard is plain HTML, CSS and ES modules in ``api/ui/`` (packaged with corral). These files
need no token — they hold nothing but code; every call the page makes goes to the API with the
user's bearer token, which the page keeps in the tab's sessionStorage (never in a URL). Only the
files in the directory are served, by exact name, with a Content-Security-Policy that lets the page
load nothing from anywhere but this server.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

UI_DIR = Path(__file__).resolve().parent / "ui"
PREFIX = "/ui/"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _files() -> dict[str, tuple[bytes, str]]:
    out: dict[str, tuple[bytes, str]] = {}
    for path in UI_DIR.iterdir():
        kind = _TYPES.get(path.suffix)
        if kind is not None and path.is_file():
            out[path.name] = (path.read_bytes(), kind)
    return out


def add_routes(router: web.UrlDispatcher) -> None:
    files = _files()  # read once: a dozen small files

    async def index(_: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": PREFIX})

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info.get("file") or "index.html"
        found = files.get(name)
        if found is None:
            raise web.HTTPNotFound(text=f"no such dashboard file: {name}")
        body, kind = found
        return web.Response(body=body, content_type=kind, charset="utf-8", headers=_HEADERS)

    router.add_get("/ui", index, allow_head=False)
    router.add_get(PREFIX, serve, allow_head=False)
    router.add_get(PREFIX + "{file}", serve, allow_head=False)


def is_public(path: str) -> bool:
    """The dashboard's own files need no token."""
    return path == "/ui" or path.startswith(PREFIX)
