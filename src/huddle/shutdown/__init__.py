"""Graceful shutdown: drain, checkpoint, preserve recordings and tasks, write recovery data, clean up."""

from .config import ShutdownConfig, ShutdownOptions
from .coordinator import CHECKPOINT_REASON, SessionGracefulShutdown, ShutdownCallback
from .models import (
    RecoveryData,
    RecoveryRecording,
    RecoverySession,
    RecoveryTask,
    ResumeReport,
    ShutdownEvent,
    ShutdownPhase,
    ShutdownStatus,
)

__all__ = [
    "CHECKPOINT_REASON",
    "RecoveryData",
    "RecoveryRecording",
    "RecoverySession",
    "RecoveryTask",
    "ResumeReport",
    "SessionGracefulShutdown",
    "ShutdownCallback",
    "ShutdownConfig",
    "ShutdownEvent",
    "ShutdownOptions",
    "ShutdownPhase",
    "ShutdownStatus",
]
