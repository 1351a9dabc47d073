"""Opaque file ids: what clients use to ask for a thumbnail or a file, never a path.

    ids = FileIds(secret)
    token = ids.issue(42, "/photos/cat.jpg")   # "42.3f9c0d1e5a7b2c44"
    ids.check(token, lambda i: "/photos/cat.jpg" if i == 42 else None)  # 42

An id is the file's row id and an HMAC of the row id and path under a secret kept in the
index, so ids cannot be guessed or enumerated, survive restarts, and stop working when the
row id is reused by another file.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

__all__ = ["FileIds", "new_secret"]

_MAC_CHARS = 16  # hex characters of the HMAC kept in an id (64 bits)


def new_secret() -> str:
    """A fresh random secret (256 bits, hex)."""
    return secrets.token_hex(32)


class FileIds:
    """Issue and check opaque file ids under one secret."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode("utf-8")

    def issue(self, file_id: int, path: str) -> str:
        """The opaque id of file ``file_id`` at ``path``."""
        return f"{file_id}.{self._mac(file_id, path)}"

    def check(self, token: str, path_of: Callable[[int], str | None]) -> int | None:
        """The row id behind ``token``, or None when it is malformed, forged or stale."""
        head, _, mac = token.partition(".")
        if not head.isdigit() or len(head) > 18 or len(mac) != _MAC_CHARS:
            return None
        file_id = int(head)
        path = path_of(file_id)
        if path is None or not hmac.compare_digest(mac, self._mac(file_id, path)):
            return None
        return file_id

    def _mac(self, file_id: int, path: str) -> str:
        message = f"{file_id}:{path}".encode("utf-8", "surrogateescape")  # name bytes
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:_MAC_CHARS]
