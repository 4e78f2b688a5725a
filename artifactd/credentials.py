"""The root key pair: from the configuration or the environment, else generated on first start
and kept in ``<data dir>/root-credentials`` (mode 0600)."""

from __future__ import annotations

import json
import os
import secrets
import string

from attrs import field, frozen
from zope.interface import implementer

from artifactd.interfaces import IAuthenticator

_ALPHABET = string.ascii_uppercase + string.digits


@frozen
class KeyPair:
    access_key: str
    secret_key: str = field(repr=False)


def generate() -> KeyPair:
    access = "AK" + "".join(secrets.choice(_ALPHABET) for _ in range(18))
    secret = secrets.token_urlsafe(30)[:40]
    return KeyPair(access, secret)


def load_or_create(path: str) -> tuple[KeyPair, bool]:
    """Read the stored pair, or create it (atomically, mode 0600).  Returns (pair, created).
    Blocking: start-up only."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return KeyPair(data["access_key"], data["secret_key"]), False
    except FileNotFoundError:
        pass
    pair = generate()
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"access_key": pair.access_key, "secret_key": pair.secret_key}, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return pair, True


@implementer(IAuthenticator)
class StaticAuthenticator:
    """Knows exactly one key pair (the root)."""

    def __init__(self, pair: KeyPair) -> None:
        self._pair = pair

    def secret_for(self, access_key: str) -> str | None:
        # compare bytes: compare_digest refuses non-ASCII str, and the key comes from the client
        given = access_key.encode("utf-8", "surrogateescape")
        if secrets.compare_digest(given, self._pair.access_key.encode()):
            return self._pair.secret_key
        return None
