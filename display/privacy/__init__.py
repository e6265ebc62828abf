"""Redaction of personal information and the sensitive-case policy (see docs/privacy.md)."""

from display.privacy.cli import redact_cli
from display.privacy.logfilter import RedactingFilter
from display.privacy.normalize import normalize
from display.privacy.policy import DEFAULT_NOT_SENSITIVE, DEFAULT_SENSITIVE_KEYWORDS, is_sensitive
from display.privacy.redact import (
    KINDS,
    PreparedHints,
    Redacted,
    Span,
    highlight_segments,
    prepare_hints,
    redact,
)

__all__ = [
    "DEFAULT_NOT_SENSITIVE",
    "DEFAULT_SENSITIVE_KEYWORDS",
    "KINDS",
    "PreparedHints",
    "Redacted",
    "RedactingFilter",
    "Span",
    "highlight_segments",
    "is_sensitive",
    "normalize",
    "prepare_hints",
    "redact",
    "redact_cli",
]
