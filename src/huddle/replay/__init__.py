"""Session replay: verifiable recordings of a session's event stream, played back at any speed."""

from .codec import FrameError
from .models import (
    RecordedEvent,
    ReplayConfig,
    ReplayFrame,
    ReplayInfo,
    ReplayOptions,
    ReplayState,
    ReplayStats,
    VerifyReport,
)
from .playback import ReplaySession
from .service import SessionReplay

__all__ = [
    "FrameError",
    "RecordedEvent",
    "ReplayConfig",
    "ReplayFrame",
    "ReplayInfo",
    "ReplayOptions",
    "ReplaySession",
    "ReplayState",
    "ReplayStats",
    "SessionReplay",
    "VerifyReport",
]
