"""Fetching a picture by URL for a caller (clip-retrieval's ``image_url``), fenced against SSRF.

A server that fetches URLs for its callers can be made to reach what only it can reach
(cloud metadata endpoints, an admin port on loopback, the local network). So fetching is off
unless hosts are named (``crossmodal serve --fetch-host HOST[:PORT]``), and then:

- only ``http`` and ``https`` URLs whose host (and port, when the entry names one) is listed;
- a host given by name must resolve to public addresses only; a private, loopback or
  link-local server is reached only when it is listed by its IP address. The connection goes
  to the address that was checked (no second lookup a DNS rebinding could change);
- redirects are followed by hand (at most ``max_redirects``), each target checked the same way;
- the body is capped (``Content-Length`` refused early, a streamed body cut at the cap), and
  the whole fetch has one deadline;
- what comes back still goes through the upload checks (pixel limit before decoding).

Errors are :class:`FetchError` with the HTTP status the service answers with: 400 (not an
http(s) URL), 403 (host not allowed), 413 (too large), 502 (the remote server failed), 504
(too slow).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from crossmodal.errors import InputError

__all__ = ["FetchError", "FetchPolicy", "fetch", "host_allowed", "split_host"]

_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 64 * 1024


class FetchError(InputError):
    """A URL that was not fetched, and the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FetchPolicy:
    """Where the service may fetch pictures from, and how much."""

    hosts: tuple[str, ...] = ()  # "host" (any port) or "host:port"; () : fetching is off
    max_bytes: int = 10 * 2**20  # the largest body accepted
    timeout: float = 5.0  # seconds for the whole fetch, redirects included
    max_redirects: int = 3

    @property
    def enabled(self) -> bool:
        return bool(self.hosts)


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # lower case, no brackets
    port: int
    path: str  # path and query, as sent


def _parse(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchError(400, "image_url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(400, "image_url must be an http or https URL")
    if not parts.hostname or parts.username or parts.password:
        raise FetchError(400, "image_url must name a host, and no user or password")
    default = 443 if parts.scheme == "https" else 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(parts.scheme, parts.hostname.lower(), port or default, path)


def host_allowed(host: str, port: int, hosts: tuple[str, ...]) -> bool:
    """Whether ``host:port`` is one of ``hosts`` ("name" for any port, "name:port" for one)."""
    for entry in hosts:
        name, entry_port = split_host(entry)
        if name == host and entry_port in (None, port):
            return True
    return False


def split_host(entry: str) -> tuple[str, int | None]:
    """``"Name:8080"`` → ``("name", 8080)``, ``"[::1]"`` → ``("::1", None)``.

    Raises:
        ValueError: The port is not a number.
    """
    entry = entry.strip().lower()
    if entry.startswith("["):  # [v6] or [v6]:port
        name, _, rest = entry[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        name, port = entry.split(":")
        return name, int(port)
    return entry, None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _address(target: _Target) -> str:
    """The address to connect to: the literal IP, or a checked public address of the name."""
    if _is_ip(target.host):
        return target.host  # listed by address: the operator chose it, private or not
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise FetchError(502, f"image_url host {target.host} does not resolve") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or not all(ipaddress.ip_address(a).is_global for a in addresses):
        raise FetchError(
            403,
            f"image_url host {target.host} resolves to a non-public address; "
            "list such a server by its IP address to allow it",
        )
    return addresses[0]


def _get(target: _Target, address: str, deadline: float, max_bytes: int) -> tuple[int, str, bytes]:
    """One GET to ``address``: ``(status, Location header, body)``."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError(504, "image_url took too long")
    sock = socket.create_connection((address, target.port), timeout=remaining)
    if target.scheme == "https":  # TLS verified against the name, on the checked address
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=target.host)
    conn = http.client.HTTPConnection(target.host, target.port, timeout=remaining)
    conn.sock = sock  # already connected: http.client will not connect (or resolve) again
    try:
        host = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
        headers = {"Host": host, "User-Agent": "crossmodal", "Accept": "image/*"}
        conn.request("GET", target.path, headers=headers)
        response = conn.getresponse()
        if response.status in _REDIRECTS:
            return response.status, response.getheader("Location") or "", b""
        if response.status != 200:
            raise FetchError(502, f"image_url answered HTTP {response.status}")
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(413, f"image_url is over {max_bytes} bytes")
        body = bytearray()
        while chunk := response.read(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise FetchError(413, f"image_url is over {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise FetchError(504, "image_url took too long")
        return 200, "", bytes(body)
    finally:
        conn.close()


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """The body at ``url``, fetched within ``policy`` (see the module doc).

    Raises:
        FetchError: Fetching is off, the URL or a redirect is not allowed, or the fetch
            failed, was too large or too slow (``.status`` says which).
    """
    if not policy.enabled:
        raise FetchError(403, "image_url fetching is off on this server; send the image itself")
    deadline = time.monotonic() + policy.timeout
    for _ in range(policy.max_redirects + 1):
        target = _parse(url)
        if not host_allowed(target.host, target.port, policy.hosts):
            raise FetchError(403, f"image_url host {target.host}:{target.port} is not allowed")
        try:
            address = _address(target)
            status, location, body = _get(target, address, deadline, policy.max_bytes)
        except TimeoutError:
            raise FetchError(504, "image_url took too long") from None
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(502, f"image_url could not be fetched: {exc}") from None
        if status == 200:
            return body
        url = urljoin(url, location)
    raise FetchError(502, f"image_url redirected more than {policy.max_redirects} times")
