"""Data cleaning: `DatasetSanitizer`, the `SanitizeStep` base of its steps, and one module per step."""

from modelops.sanitize.sanitizer import DatasetSanitizer, SanitizeReport
from modelops.sanitize.step import SanitizeStep

__all__ = ["DatasetSanitizer", "SanitizeReport", "SanitizeStep"]
