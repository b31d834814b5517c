"""Normalise text: mojibake (optional, with ftfy), unicode form, control and zero-width characters, whitespace."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import ClassVar

from modelops.errors import ConfigError
from modelops.sanitize.step import SanitizeStep, StepContext, flags, map_step, map_texts

# Cc/Cf characters other than tab and newline: bells, escapes, zero-width spaces, BOMs.
_INVISIBLE = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u200b-\u200f\u2060-\u2064\ufeff]")
_SPACES = re.compile(r"[^\S\n]+")
_NEWLINES = re.compile(r"\s*\n\s*")
_FORMS = ("NFC", "NFKC", "NFD", "NFKD")


@dataclass
class Normalize(SanitizeStep):
    """Rewrite every text field: unicode normal form, invisible characters out, whitespace tidied.

    Args:
        unicode_form: `NFC`, `NFKC` (default: folds full-width letters and non-breaking spaces),
            `NFD`, `NFKD`, or null to leave the form alone.
        strip_control: remove control and zero-width characters (tab and newline are kept).
        collapse_whitespace: runs of spaces/tabs become one space; blank-line runs one newline.
        strip: trim leading and trailing whitespace.
        fix_mojibake: repair text decoded with the wrong codec ("cafÃ©" -> "café") with `ftfy`
            first; needs the `ftfy` package.
    """

    unicode_form: str | None = "NFKC"
    strip_control: bool = True
    collapse_whitespace: bool = True
    strip: bool = True
    fix_mojibake: bool = False
    name: ClassVar[str] = "normalize"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.unicode_form is not None and self.unicode_form not in _FORMS:
            raise ConfigError(f"normalize.unicode_form: {self.unicode_form!r} is not one of {list(_FORMS)} or null")
        self._fix = _ftfy_fixer() if self.fix_mojibake else None

    def clean(self, text: str) -> str:
        """The normalised form of one text."""
        if text.isascii() and text.isprintable() and "  " not in text:
            # No control character, tab, newline or double space, and ASCII is in every normal
            # form and has no mojibake: only the ends can change. Most rows take this exit.
            return text.strip() if self.strip else text
        if self._fix is not None:
            text = self._fix(text)
        if self.unicode_form and not text.isascii():  # ASCII is in every normal form already
            text = unicodedata.normalize(self.unicode_form, text)
        if self.strip_control:
            text = _INVISIBLE.sub("", text)
        if self.collapse_whitespace:
            text = _NEWLINES.sub("\n", _SPACES.sub(" ", text))
        return text.strip() if self.strip else text

    def __call__(self, table, ctx: StepContext):
        def batch_fn(batch):
            columns, changed = map_texts(batch, ctx, self.clean)
            return {**columns, **flags(len(changed), modified=changed)}

        return map_step(table, ctx, batch_fn)


def _ftfy_fixer():
    try:
        import ftfy
    except ImportError as exc:
        raise ConfigError("normalize.fix_mojibake: needs the ftfy package (pip install ftfy)") from exc
    # Only the encoding repair: the rest (unicode form, whitespace) is this step's own business.
    config = ftfy.TextFixerConfig(
        unescape_html=False, remove_terminal_escapes=False, fix_latin_ligatures=False,
        fix_character_width=False, uncurl_quotes=False, fix_line_breaks=False, normalization=None,
    )  # fmt: skip
    return lambda text: ftfy.fix_text(text, config)
