"""The HTTP API (``create_app``), its tokens and roles, and the blocking client."""

from .app import create_app
from .auth import Identity, TokenStore
from .streams import StreamSettings

__all__ = ["Identity", "StreamSettings", "TokenStore", "create_app"]
