"""Data cleaning: `DatasetSanitizer` and one module per step."""

from modelops.sanitize.sanitizer import DatasetSanitizer, SanitizeReport

__all__ = ["DatasetSanitizer", "SanitizeReport"]
