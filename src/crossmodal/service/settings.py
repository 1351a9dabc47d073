"""Settings of the HTTP service: where it listens, who may call it, and how much they may ask."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from crossmodal.errors import ConfigError
from crossmodal.service.fetch import FetchPolicy, split_host

__all__ = ["ServiceSettings", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServiceSettings:
    """One service: an index, an address, a token, and limits on every request."""

    db: Path  # the index directory (``crossmodal index --db``)
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8000
    token: str | None = None  # a bearer token every /api call must carry; required off loopback
    max_k: int = 200  # the most hits one search may ask for
    max_body_bytes: int = 16 * 2**20  # request bodies above this get 413
    max_image_pixels: int = 40_000_000  # uploaded pictures declaring more get 400 (bombs)
    thumbnail_size: int = 256  # longest side of a thumbnail
    preview_size: int = 1024  # longest side of the page's larger view (``/api/thumb?size=``)
    name: str = "crossmodal"  # the index's name in clip-retrieval's /indices-list
    roots: tuple[str, ...] = ()  # folders POST /api/index may index; () turns management off
    cors_origins: tuple[str, ...] = ()  # origins allowed cross-origin calls; () : no CORS at all
    reranker: Path | None = None  # re-ranker weights: lets a text search ask for "rerank": N
    fetch_hosts: tuple[str, ...] = ()  # hosts image_url may be fetched from; () : fetching off
    fetch_max_bytes: int = 10 * 2**20  # the largest picture fetched by URL
    fetch_timeout: float = 5.0  # seconds for one image_url fetch, redirects included
    # where clients reach this server: the base of the links in /knn-service answers. None:
    # this server's own address when it listens on loopback, else links relative to the host
    # the client called. Never the request's Host header, which the client writes.
    public_url: str | None = None

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"binding to {self.host} exposes the index beyond this machine; pass a bearer "
                "token (--token, or CROSSMODAL_TOKEN) or bind to 127.0.0.1"
            )
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("the token must have at least 16 characters")
        if "*" in self.cors_origins and self.token:
            raise ConfigError(
                "CORS origin '*' with a token would let any site use it; name the origins"
            )
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"public_url must start with http:// or https://: {self.public_url}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0 to 65535 (0: any free port), not {self.port}")
        if self.max_k < 1 or self.max_body_bytes < 1 or self.max_image_pixels < 1:
            raise ConfigError("max_k, max_body_bytes and max_image_pixels must be positive")
        if not 16 <= self.thumbnail_size <= self.preview_size:
            raise ConfigError(
                "thumbnail_size must be at least 16 and preview_size at least thumbnail_size, "
                f"not {self.thumbnail_size} and {self.preview_size}"
            )
        if self.fetch_max_bytes < 1 or self.fetch_timeout <= 0:
            raise ConfigError("fetch_max_bytes and fetch_timeout must be positive")
        for entry in self.fetch_hosts:
            try:
                name, _ = split_host(entry)
            except ValueError:
                name = ""
            if not name or "/" in entry or "*" in entry:
                raise ConfigError(
                    f"fetch host {entry!r}: give a host name or IP address, with an optional "
                    "port (images.example.com, 10.0.0.5:8080); no scheme, path or wildcard"
                )

    @property
    def fetch_policy(self) -> FetchPolicy:
        """Where image_url may be fetched from (off when no host is named)."""
        return FetchPolicy(self.fetch_hosts, self.fetch_max_bytes, self.fetch_timeout)

    def base_url(self, server: tuple[str, int] | None) -> str:
        """The base of absolute links to this server ("" : relative links).

        ``server`` is the listening socket's address (ASGI ``scope["server"]``), which the
        client cannot forge, unlike the ``Host`` header.
        """
        if self.public_url:
            return self.public_url.rstrip("/")
        if server is None or not is_loopback(server[0]):
            return ""
        host = f"[{server[0]}]" if ":" in server[0] else server[0]
        return f"http://{host}:{server[1]}"
