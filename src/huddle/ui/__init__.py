"""The web console: live sessions, timelines, replay and health in the browser (mounted at ``/ui``)."""

from .app import CONTENT_SECURITY_POLICY, console_app

__all__ = ["CONTENT_SECURITY_POLICY", "console_app"]
