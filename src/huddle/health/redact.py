"""Keep secrets out of responses: URL credentials and every known secret value are masked."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import RedisCluster

from ..backend.autodetect import AutoClient

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s\"]*):[^@/\s\"]+@")
MIN_SECRET = 4
"""Shorter values are not replaced literally (it would mangle unrelated text); URL masking still applies."""


def secrets_of_client(client: Any) -> list[str]:
    """The password a redis-py client authenticates with, if it has one.

    ``connection_kwargs`` is on a cluster client and on an auto-detecting one (read without detecting);
    a plain client keeps them on its pool."""
    if isinstance(client, AutoClient | RedisCluster):
        kwargs = client.connection_kwargs
    else:
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    password = (kwargs or {}).get("password")
    return [str(password)] if password else []


def secrets_of_url(url: str | None) -> list[str]:
    """The password inside a URL, raw and percent-decoded."""
    if not url:
        return []
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


class Redactor:
    """Masks URL credentials and the registered secret values in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Register more secret values."""
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET:
                self._secrets.update((secret, json.dumps(secret)[1:-1]))  # also as it appears inside JSON

    def __call__(self, text: str) -> str:
        text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, "***")
        return text
