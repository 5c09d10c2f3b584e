"""The HTTP API (``create_app``), its tokens and roles, and the blocking client.

The HTTP side (FastAPI) is imported when first used: ``huddle.blocking`` and MCP over stdio live in this package
too and do not need it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .auth import Identity, TokenStore
    from .streams import StreamSettings

__all__ = ["Identity", "StreamSettings", "TokenStore", "create_app"]
_HOMES = {"create_app": ".app", "Identity": ".auth", "TokenStore": ".auth", "StreamSettings": ".streams"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value
