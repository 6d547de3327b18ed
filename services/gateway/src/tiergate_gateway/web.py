"""The website chat's files: the full page at `/`, the embeddable widget under `/widget/`.

`web/` builds them (`make setup` runs the build) into `[web] dist_dir`: `index.html` and
`widget/` (the loader `widget.js`, which defines `<tiergate-chat>` and loads the rest, hashed
chunks beside it). They are read once when the app is created and served from memory:

- `/` (GET, HEAD): the page, under its own Content-Security-Policy — the API's
  `default-src 'none'` plus scripts, styles, images and connections from this origin only;
  no inline script or style, nothing third-party. `no-cache` with an ETag.
- `/widget/<name>`: the loader and other unhashed files (`page.css`) `no-cache` (so a new
  build reaches embedding sites at once), hashed chunks `immutable` for a year. A module
  script is fetched in CORS mode, so a site on another origin can embed it:
  `Access-Control-Allow-Origin: *` and `Cross-Origin-Resource-Policy: cross-origin` (public
  files, never credentials).
- A directory that was not built: both answer 404 `web_not_built`, naming the command.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, route
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from tiergate_runtime.edge import request_record
from tiergate_runtime.errors import NotFound

__all__ = ["PAGE_CSP", "WIDGET_PREFIX", "WebFiles", "WebSettings", "web_routes"]

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Litestar adds "; charset=utf-8" to text types.
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".html": "text/html",
}
WIDGET_PREFIX = "/widget/"
"""The widget's files: public, readable from any origin (the browser guard knows it too)."""
_ACAO = b"access-control-allow-origin"
_HASHED = re.compile(r"-[A-Za-z0-9_-]{8}\.(?:js|css)$")
"""A name the build gave a content hash (`app-0WX4UFIU.js`): never changes, cached a year."""
_MAX_FILES = 200
_MAX_FILE_BYTES = 4 * 1024 * 1024


class WebSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[web]`: the website chat's built files."""

    enabled: bool = True
    """Serve the page at `/` and the widget under `/widget/`; false: neither (404)."""
    dist_dir: str = "web/dist"
    """The build's output (`make setup` builds it); relative paths from the working
    directory (`make run`: the repository). Images: `/app/web`."""
    page: bool = True
    """Serve the full-page chat at `/` (false: only the widget, for embedding)."""


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: str
    etag: str
    immutable: bool


class WebFiles:
    """The built files, read once (see the module docstring)."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        root = Path(settings.dist_dir)
        self.page: _File | None = None
        self.widget: dict[str, _File] = {}
        if not settings.enabled or not (root / "widget" / "widget.js").is_file():
            return
        if settings.page and (root / "index.html").is_file():
            self.page = _read(root / "index.html", immutable=False)
        files = sorted(p for p in (root / "widget").rglob("*") if p.is_file())[:_MAX_FILES]
        for path in files:
            name = path.relative_to(root / "widget").as_posix()
            self.widget[name] = _read(path, immutable=_HASHED.search(name) is not None)

    @property
    def built(self) -> bool:
        """Whether a build was found."""
        return bool(self.widget)


def _read(path: Path, *, immutable: bool) -> _File:
    body = path.read_bytes()[:_MAX_FILE_BYTES]
    kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    return _File(body, kind or "application/octet-stream", etag, immutable)


def _not_built(request: Request[Any, Any, Any]) -> NotFound:
    return NotFound(
        f"Unknown path: {request.method} {request.url.path} (the web chat is not built "
        "here: run `make setup`, or set [web] dist_dir).",
        code="web_not_built",
    )


def _answer(
    request: Request[Any, Any, Any], file: _File, headers: dict[str, str]
) -> Response[bytes]:
    headers = {
        **headers,
        "etag": file.etag,
        "cache-control": "public, max-age=31536000, immutable" if file.immutable else "no-cache",
    }
    if request.headers.get("if-none-match") == file.etag:
        return Response(b"", status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else file.body
    return Response(body, media_type=file.content_type, headers=headers)


def web_routes(files: WebFiles) -> list[HTTPRouteHandler]:
    """`GET /` (the page) and `GET /widget/{name}` (the widget's files)."""

    @route("/", http_method=["GET", "HEAD"], include_in_schema=False)
    async def page(request: Request[Any, Any, Any]) -> Response[bytes]:
        if files.page is None:
            raise _not_built(request)
        return _answer(request, files.page, {"content-security-policy": PAGE_CSP})

    @route(WIDGET_PREFIX + "{name:path}", http_method=["GET", "HEAD"], include_in_schema=False)
    async def widget(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
        found = files.widget.get(name.removeprefix("/"))
        if found is None:
            if files.built:
                raise NotFound(
                    f"Unknown path: {request.method} {request.url.path}", code="unknown_url"
                )
            raise _not_built(request)
        headers = {"cross-origin-resource-policy": "cross-origin"}
        # An allowlisted origin already got its own (credentialed) CORS answer from the
        # browser guard: a second Access-Control-Allow-Origin would make browsers refuse both.
        if not any(k == _ACAO for k, _ in request_record(request.scope).extra_headers):
            headers["access-control-allow-origin"] = "*"
        return _answer(request, found, headers)

    return [page, widget]
