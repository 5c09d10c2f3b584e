"""Session migration between Redis instances and cross-instance sync."""

from .config import CONFLICT_POLICIES, ConflictPolicy, MigrationConfig
from .models import (
    ConflictRecord,
    CrossInstanceSession,
    MigrationErrorRecord,
    MigrationProgress,
    MigrationTask,
    RollbackReport,
    SessionDigest,
    SessionMismatch,
    SideValues,
    ValidationReport,
)
from .service import SessionMigration
from .sync_links import read_sync_links

__all__ = [
    "CONFLICT_POLICIES",
    "ConflictPolicy",
    "ConflictRecord",
    "CrossInstanceSession",
    "MigrationConfig",
    "MigrationErrorRecord",
    "MigrationProgress",
    "MigrationTask",
    "RollbackReport",
    "SessionDigest",
    "SessionMigration",
    "SessionMismatch",
    "SideValues",
    "ValidationReport",
    "read_sync_links",
]
