"""An E2B API key, kept out of every repr, log line and traceback local.

Outside :class:`ApiKey` a key is only ever named by its fingerprint (a hash): the pool caches
backends under it and the backend's repr shows it, so nothing the operator prints reveals a key.
"""

from __future__ import annotations

import hashlib

__all__ = ["ApiKey", "key_fingerprint"]


def key_fingerprint(api_key: str) -> str:
    """A short, stable, non-reversible name for an API key: safe in logs, reprs and dict keys."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class ApiKey:
    """Holds the key so that no repr, log line or traceback local shows it."""

    __slots__ = ("_value", "fingerprint")

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("an E2B API key is required")
        self._value = value
        self.fingerprint = key_fingerprint(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"<E2B API key {self.fingerprint}>"

    __str__ = __repr__
