"""A mutable collector of issues that becomes a frozen ``ValidationResult``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .models import (
    Category,
    Check,
    Environment,
    EnvironmentValidation,
    Recommendation,
    ValidationIssue,
    ValidationResult,
)

Level = Literal["error", "warning", "info"]


@dataclass
class Findings:
    """Collects errors, warnings, recommendations and checks (first occurrence of a code wins)."""

    errors: list[ValidationIssue] = field(default_factory=list)
    warnings: list[ValidationIssue] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def error(self, code: str, category: Category, message: str, field: str | None = None) -> None:
        """Something that prevents operation."""
        if all(issue.code != code or issue.field != field for issue in self.errors):
            self.errors.append(ValidationIssue(code=code, category=category, message=message, field=field))

    def warning(self, code: str, category: Category, message: str, field: str | None = None) -> None:
        """Something that may cause problems."""
        if all(issue.code != code or issue.field != field for issue in self.warnings):
            self.warnings.append(ValidationIssue(code=code, category=category, message=message, field=field))

    def recommend(
        self,
        code: str,
        category: Category,
        message: str,
        reason: str,
        priority: Literal["high", "medium", "low"] = "medium",
    ) -> None:
        """A suggestion and why."""
        if all(rec.code != code for rec in self.recommendations):
            self.recommendations.append(
                Recommendation(
                    code=code, category=category, message=message, reason=reason, priority=priority
                )
            )

    def at_level(
        self, level: Level, code: str, category: Category, message: str, reason: str, field: str | None = None
    ) -> None:
        """Report ``message`` as an error, a warning or (``info``) a recommendation, as the environment asks."""
        if level == "error":
            self.error(code, category, message, field)
        elif level == "warning":
            self.warning(code, category, message, field)
        else:
            self.recommend(code, category, message, reason, priority="low")

    def check(
        self, name: str, status: Literal["pass", "fail", "warn", "unknown", "skipped"], detail: str
    ) -> None:
        """Record how one check came out."""
        self.checks.append(Check(name=name, status=status, detail=detail))

    def extend(self, other: Findings) -> None:
        """Add everything ``other`` found."""
        for issue in other.errors:
            self.error(issue.code, issue.category, issue.message, issue.field)
        for issue in other.warnings:
            self.warning(issue.code, issue.category, issue.message, issue.field)
        for rec in other.recommendations:
            self.recommend(rec.code, rec.category, rec.message, rec.reason, rec.priority)
        self.checks.extend(other.checks)

    def result(self) -> ValidationResult:
        """The frozen result; valid when there is no error."""
        return ValidationResult(
            valid=not self.errors,
            errors=list(self.errors),
            warnings=list(self.warnings),
            recommendations=list(self.recommendations),
            checks=list(self.checks),
        )

    def environment_result(self, environment: Environment) -> EnvironmentValidation:
        """The frozen result under ``environment``'s rules."""
        return EnvironmentValidation(environment=environment, **self.result().model_dump())
