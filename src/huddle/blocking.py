"""``from huddle.blocking import SessionManager``: the session manager without ``await`` (see huddle.api.blocking)."""

from .api.blocking import BlockingIterator, SessionManager

__all__ = ["BlockingIterator", "SessionManager"]
