"""Configuration validation: schema, environment rules, security, performance and live server checks."""

from .models import (
    Check,
    ConfigurationReport,
    Environment,
    EnvironmentValidation,
    Recommendation,
    ServerFacts,
    ValidationIssue,
    ValidationResult,
)
from .validator import SessionConfigValidator

__all__ = [
    "Check",
    "ConfigurationReport",
    "Environment",
    "EnvironmentValidation",
    "Recommendation",
    "ServerFacts",
    "SessionConfigValidator",
    "ValidationIssue",
    "ValidationResult",
]
