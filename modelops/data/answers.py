"""Answer extraction and normalisation: filters that turn a generation or a reference into the answer compared.

The filters follow lm-evaluation-harness's (``regex`` with a group to select, the last number, the first
choice letter, a normaliser) and run in order on both the generated text and the reference, so a GSM8K
reference ``"... #### 1,000"`` and a generation ``"The answer is 1000."`` compare as ``1000`` = ``1000``.
A filter that finds nothing gives None, and the filters after it are skipped: an unextractable generation
scores 0; an unextractable reference is counted and listed by the evaluator, never scored.

A filter list is written in config as a list whose entries are a filter name or a one-key mapping from a
name to its argument::

    filters:
      - regex: "#### (\\-?[0-9\\.\\,]+)"          # group 1 of the first match; {pattern, group, take: last}
      - numeric                                  # "1,000" -> "1000", "3.50" -> "3.5", "$7." -> "7"
    # or: [last_number, numeric] | [first_choice] | [{first_choice: ABCD}] | [{normalize: [case, punctuation]}]

``auto`` (the evaluator's default) is `GSM8K_FILTERS` when a reference carries the ``####`` marker, else no
filter. Comparison is exact string equality after the filters, or with ``match="math"`` Hugging Face's
``math-verify`` (``pip install math-verify``) on the extracted strings.

This module sits in the data layer so that training (GRPO rewards) and evaluation share it.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from modelops.errors import ConfigError, did_you_mean

#: lm-evaluation-harness's GSM8K ``strict-match`` pattern: the number after ``####``.
GSM8K_PATTERN = r"#### (\-?[0-9\.\,]+)"
GSM8K_FILTERS: list[Any] = [{"regex": GSM8K_PATTERN}, "numeric"]
GSM8K_MARKER = "####"
NORMALIZATIONS = ("case", "punctuation", "whitespace")
MATCHES = ("exact", "math")

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")

Filter = Callable[[str], str | None]


@dataclass(frozen=True)
class Extraction:
    """What the filters made of one row: the extracted answers and whether they match.

    Attributes:
        prediction: the generation's answer after the filters (None: nothing extracted).
        reference: the reference's answer after the filters (None: nothing extracted; the row is not scored).
        match: whether they are equal; None when the reference gave nothing.
    """

    prediction: str | None
    reference: str | None
    match: bool | None


def regex(pattern: str, group: int = 1, take: str = "first") -> Filter:
    """Select ``group`` of the first (or, with ``take="last"``, the last) match of ``pattern``; None: no match."""
    compiled = re.compile(pattern)

    def extract(text: str) -> str | None:
        found = list(compiled.finditer(text)) if take == "last" else [m for m in [compiled.search(text)] if m]
        return found[-1].group(group) if found else None

    return extract


def last_number(text: str) -> str | None:
    """The last number in ``text`` (``-1,234.5``, ``$12``), as written; None when there is none."""
    found = _NUMBER.findall(text)
    return found[-1] if found else None


def first_choice(letters: str = "ABCDE") -> Filter:
    """The first standalone choice letter (``B``, ``(B)``, ``B.``) among ``letters``; None when there is none."""
    compiled = re.compile(rf"(?<![A-Za-z])([{re.escape(letters)}])(?![A-Za-z])")

    def extract(text: str) -> str | None:
        found = compiled.search(text)
        return found.group(1) if found else None

    return extract


def normalize(options: Sequence[str] = ("whitespace",)) -> Filter:
    """Case-fold, drop punctuation, squeeze whitespace: each only when named, in that order."""
    options = tuple(options)

    def apply(text: str) -> str:
        return normalize_text(text, options)

    return apply


def normalize_text(text: str, options: Sequence[str] = ("whitespace",)) -> str:
    """``case``: casefold; ``punctuation``: drop punctuation and ASCII symbols; ``whitespace``: strip, squeeze."""
    if "case" in options:
        text = text.casefold()
    if "punctuation" in options:
        text = "".join(c for c in text if not (unicodedata.category(c).startswith("P") or c in string.punctuation))
    if "whitespace" in options:
        text = " ".join(text.split())
    return text


def numeric(text: str) -> str:
    """A number in canonical form (``1,000`` -> ``1000``, ``3.50`` -> ``3.5``, ``$7.`` -> ``7``); else unchanged."""
    candidate = text.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        value = Decimal(candidate)
    except InvalidOperation:
        return text
    if not value.is_finite():
        return text
    value = value.normalize()
    return f"{value:f}" if value != 0 else "0"


_FACTORIES: dict[str, Callable[..., Filter]] = {
    "regex": regex,
    "last_number": lambda: last_number,
    "first_choice": first_choice,
    "normalize": normalize,
    "numeric": lambda: numeric,
}
FILTER_NAMES = tuple(_FACTORIES)


def build_filters(spec: Any, key: str = "filters") -> list[Filter]:
    """The filter functions a config list describes (see the module docstring); ``None``/``[]``: none.

    Raises:
        ConfigError: naming ``key.<i>`` (and the filter) for an unknown filter, a bad argument, a regex that
            does not compile or has no group to select.
    """
    if spec is None:
        return []
    if isinstance(spec, str | Mapping):
        raise ConfigError(f"{key}: expected a list of filters, got {spec!r}; e.g. [{{regex: '{GSM8K_PATTERN}'}}]")
    return [_build_one(entry, f"{key}.{i}") for i, entry in enumerate(spec)]


def _build_one(entry: Any, key: str) -> Filter:
    if isinstance(entry, str):
        name, argument = entry, None
    elif isinstance(entry, Mapping) and len(entry) == 1:
        ((name, argument),) = entry.items()
    else:
        raise ConfigError(f"{key}: a filter is a name or a one-key mapping {{name: argument}}, got {entry!r}")
    if name not in _FACTORIES:
        raise ConfigError(f"{key}: unknown filter {name!r}{did_you_mean(name, FILTER_NAMES)}; filters: {FILTER_NAMES}")
    key = f"{key}.{name}"
    if name == "regex":
        return _build_regex(argument, key)
    if name == "first_choice":
        return first_choice(*([] if argument is None else [_letters(argument, key)]))
    if name == "normalize":
        return normalize(_normalize_options(argument, key))
    if argument is not None:
        raise ConfigError(f"{key}: takes no argument, got {argument!r}")
    return _FACTORIES[name]()


def _build_regex(argument: Any, key: str) -> Filter:
    options = dict(argument) if isinstance(argument, Mapping) else {"pattern": argument}
    unknown = set(options) - {"pattern", "group", "take"}
    if unknown or not isinstance(options.get("pattern"), str):
        raise ConfigError(f"{key}: expected a pattern string or {{pattern, group, take}}, got {argument!r}")
    try:
        compiled = re.compile(options["pattern"])
    except re.error as exc:
        raise ConfigError(f"{key}: pattern {options['pattern']!r} does not compile: {exc}") from exc
    group, take = options.get("group", 1), options.get("take", "first")
    if compiled.groups == 0:
        raise ConfigError(f"{key}: pattern {options['pattern']!r} has no group to select; put the answer in (...)")
    if not isinstance(group, int) or not 0 <= group <= compiled.groups:
        raise ConfigError(f"{key}.group: {group!r} is not a group of {options['pattern']!r} (0..{compiled.groups})")
    if take not in ("first", "last"):
        raise ConfigError(f"{key}.take: {take!r} is not one of first, last")
    return regex(options["pattern"], group, take)


def _letters(argument: Any, key: str) -> str:
    if not isinstance(argument, str) or not argument.isalpha():
        raise ConfigError(f"{key}: expected the choice letters as one string (e.g. ABCD), got {argument!r}")
    return argument


def _normalize_options(argument: Any, key: str) -> tuple[str, ...]:
    options = NORMALIZATIONS if argument is None else [argument] if isinstance(argument, str) else list(argument)
    bad = [option for option in options if option not in NORMALIZATIONS]
    if bad:
        raise ConfigError(f"{key}: unknown option(s) {bad}; options are {list(NORMALIZATIONS)}")
    return tuple(options)


def resolve_filters(spec: Any, references: Sequence[str], key: str = "filters") -> Any:
    """``auto`` becomes `GSM8K_FILTERS` when some reference carries ``####``, else no filter; lists stay."""
    if spec == "auto":
        return GSM8K_FILTERS if any(GSM8K_MARKER in ref for ref in references) else []
    return spec


def apply_filters(filters: Sequence[Filter], text: str) -> str | None:
    """Run the filters in order; None as soon as one finds nothing."""
    out: str | None = text
    for step in filters:
        out = step(out)
        if out is None:
            return None
    return out


def extract_and_match(
    filters: Sequence[Filter], prediction: str, reference: str, normalize: Sequence[str] = ("whitespace",),
    match: str = "exact",
) -> Extraction:  # fmt: skip
    """Filter both sides, normalise them with ``normalize`` and compare (``exact`` or ``math`` via math-verify)."""
    ref = apply_filters(filters, reference)
    pred = apply_filters(filters, prediction)
    if ref is None:
        return Extraction(pred, None, None)
    if pred is None:
        return Extraction(None, ref, False)
    if match == "math":
        return Extraction(pred, ref, math_equal(pred, ref))
    return Extraction(pred, ref, normalize_text(pred, normalize) == normalize_text(ref, normalize))


def math_available() -> bool:
    """Whether Hugging Face's ``math-verify`` is installed."""
    import importlib.util

    return importlib.util.find_spec("math_verify") is not None


def math_equal(prediction: str, reference: str) -> bool:
    """Mathematical equivalence by ``math_verify.verify(parse(reference), parse(prediction))``."""
    from math_verify import parse, verify

    return bool(verify(parse(reference), parse(prediction)))


def check_match(match: str, key: str = "match") -> None:
    """Raise ConfigError for an unknown ``match`` or ``math`` without math-verify installed."""
    if match not in MATCHES:
        raise ConfigError(f"{key}: {match!r} is not one of {list(MATCHES)}{did_you_mean(match, MATCHES)}")
    if match == "math" and not math_available():
        raise ConfigError(f"{key}: 'math' needs Hugging Face's math-verify: pip install math-verify")
