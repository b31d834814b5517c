"""PII scrubbing: find e-mail addresses, phone numbers, IPs, cards, IBANs, SSNs and secrets, and mask or drop them.

The core (`find_pii`, `scrub`) is pure Python and usable alone. Each type is a regex that finds
candidates plus, where the format has one, a validator (Luhn, ISO 13616 mod-97, `ipaddress`,
SSN ranges) that turns the candidate down; that validator is what keeps order numbers, dates and
version strings out. Overlapping candidates of different types are resolved once, for all types
(the longest wins, then the type listed first), so a card-shaped run of digits inside an IBAN is
never reported as a card, even when only cards are asked for.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from modelops.errors import ConfigError
from modelops.sanitize.step import SanitizeStep, StepContext, flags, map_step, map_texts, mark, row_texts

#: Every PII type, in the order that breaks ties between overlapping matches of equal length.
PII_TYPES: tuple[str, ...] = ("SECRET", "EMAIL", "IBAN", "IPV6", "CREDIT_CARD", "SSN", "IPV4", "PHONE")
ACTIONS: tuple[str, ...] = ("replace", "drop")


class PiiMatch(NamedTuple):
    """One PII span: its type and the `[start, end)` character offsets in the text."""

    type: str
    start: int
    end: int


# --- patterns (compiled once) ----------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}\b"
)

# A phone number starts where no digit group precedes it, and ends where no word, `-digit` or `.digit` follows.
_PHONE_END = r"(?![\w-]|\.\d)"
_PHONE_PATTERNS = (
    # International: +CC, an optional "(0)" trunk, then digit groups with separators, or compact.
    re.compile(
        r"(?<![\w+])\+(?:\d{8,15}|\d{1,3}(?:[ .-]?\(\d{1,4}\))?[ .-]?\d{1,8}(?:[ .-]\d{1,8}){0,5})" + _PHONE_END
    ),
    # North American (NANP): area and exchange start with 2-9; "(415) 555-2671", "1-800-555-0199".
    re.compile(
        r"(?<![\w+.-])(?<!\d[ .])(?:1[ .-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}" + _PHONE_END
    ),
    # European national: trunk 0, one separator used throughout ("020 7946 0958", "06.12.34.56.78").
    re.compile(r"(?<![\w+.-])(?<!\d[ .])0\d{1,4}(?P<sep>[ .-])\d{2,8}(?:(?P=sep)\d{2,4}){0,3}" + _PHONE_END),
)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\d|\.\d)")
# "version 1.2.3.4" is a dotted quad that names a release, not a host.
_VERSION_CONTEXT = re.compile(r"(?:\b(?:version|ver|release|build|firmware|patch|rev|v)[\s:.]*)$", re.IGNORECASE)

_IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})(?![\w:])"
)

_CARD = re.compile(
    # Not preceded by "digit, separator": such a run continues a longer digit sequence (an IBAN's groups).
    r"(?<![\w-])(?<!\d[ -])(?:\d{13,19}"
    r"|\d{4}(?P<s1>[ -])\d{4}(?P=s1)\d{4}(?P=s1)\d{1,4}(?:(?P=s1)\d{3})?"  # 4-4-4-4(-3)
    r"|\d{4}(?P<s2>[ -])\d{6}(?P=s2)\d{4,5})"  # Amex / Diners 4-6-5 and 4-6-4
    r"(?![\w-])"
)

_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)(?![A-Za-z0-9])"
)

#: IBAN length per country (ISO 13616 registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")

_SECRET_PATTERNS = (
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),  # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{60,}\b"),  # GitHub fine-grained token
    re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),  # Slack
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![\w-])"),  # Google API key
    re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b|\bpk_live_[A-Za-z0-9]{16,}\b"),  # Stripe
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # JWT
    re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)"
    ),  # PEM private key, also when cut off before its END line
)
# OpenAI-style "sk-..." keys are random base62: a body without a digit is a word ("sk-learn-...").
_OPENAI = re.compile(r"(?<![\w-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}(?![\w-])")


# Every detector above needs one of these (a digit, "@", ":" or a secret's fixed prefix): a text
# without any cannot hold PII, and most prose is skipped with one search instead of a dozen.
_MAYBE_PII = re.compile(
    r"[\d@:]|AKIA|ASIA|gh[pousr]_|github_pat_|xox[abpr]-|AIza|[sr]k_(?:live|test)_|pk_live_|eyJ|-----BEGIN"
)


# --- validators --------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (ISO/IEC 7812)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """Whether a compact (no spaces) IBAN has its country's length and passes ISO 7064 mod 97-10."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _card_ok(m: re.Match, text: str) -> bool:
    digits = re.sub(r"\D", "", m.group())
    # Issuer identification: 2 (Mastercard 2-series), 3 (Amex, Diners, JCB), 4 (Visa), 5, 6 (Discover, UnionPay).
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def _phone_ok(m: re.Match, text: str) -> bool:
    digits = sum(ch.isdigit() for ch in m.group())
    if m.group().startswith("+"):
        return 8 <= digits <= 15  # E.164 allows at most 15 digits
    if m.group().startswith("0"):
        return 10 <= digits <= 11
    return True


def _ipv4_ok(m: re.Match, text: str) -> bool:
    return not _VERSION_CONTEXT.search(text[max(0, m.start() - 24) : m.start()])


def _ipv6_ok(m: re.Match, text: str) -> bool:
    candidate = m.group()
    if not any(ch not in ":" for ch in candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _openai_ok(m: re.Match, text: str) -> bool:
    body = m.group()[3:]
    return any(ch.isdigit() for ch in body) and any(ch.isalpha() for ch in body)


def _iban_span(m: re.Match, text: str) -> tuple[int, int] | None:
    """The IBAN inside a candidate: as many characters as its country needs, ending on a group boundary."""
    want = IBAN_LENGTHS.get(m.group()[:2])
    if want is None:
        return None
    count = 0
    for offset, ch in enumerate(m.group()):
        count += ch != " "
        if count == want:
            end = m.start() + offset + 1
            rest = text[end : m.end()]
            if rest and not rest.startswith(" "):
                return None
            return (m.start(), end) if iban_valid(text[m.start() : end].replace(" ", "")) else None
    return None


def _always(m: re.Match, text: str) -> bool:
    return True


_Check = Callable[[re.Match, str], bool]
_DETECTORS: dict[str, tuple[tuple[re.Pattern, _Check], ...]] = {
    "EMAIL": ((_EMAIL, _always),),
    "PHONE": tuple((p, _phone_ok) for p in _PHONE_PATTERNS),
    "IPV4": ((_IPV4, _ipv4_ok),),
    "IPV6": ((_IPV6_CANDIDATE, _ipv6_ok),),
    "CREDIT_CARD": ((_CARD, _card_ok),),
    "SSN": ((_SSN, _always),),
    "SECRET": (*((p, _always) for p in _SECRET_PATTERNS), (_OPENAI, _openai_ok)),
}


# --- core API ----------------------------------------------------------------------------------


def _candidates(text: str) -> list[PiiMatch]:
    if not _MAYBE_PII.search(text):
        return []
    found = []
    for kind, detectors in _DETECTORS.items():
        for pattern, check in detectors:
            found.extend(PiiMatch(kind, m.start(), m.end()) for m in pattern.finditer(text) if check(m, text))
    for m in _IBAN.finditer(text):
        span = _iban_span(m, text)
        if span is not None:
            found.append(PiiMatch("IBAN", *span))
    return found


def _resolve(candidates: list[PiiMatch]) -> list[PiiMatch]:
    """Keep non-overlapping matches, longest first, ties broken by the order of `PII_TYPES`."""
    rank = {kind: i for i, kind in enumerate(PII_TYPES)}
    chosen: list[PiiMatch] = []
    for match in sorted(candidates, key=lambda m: (m.start - m.end, rank[m.type], m.start)):
        if all(match.end <= c.start or match.start >= c.end for c in chosen):
            chosen.append(match)
    return sorted(chosen, key=lambda m: m.start)


def _check_types(types: Iterable[str] | None) -> frozenset[str]:
    if types is None:
        return frozenset(PII_TYPES)
    wanted = frozenset(t.upper() for t in types)
    unknown = sorted(wanted - set(PII_TYPES))
    if unknown:
        raise ConfigError(f"pii.types: unknown type(s) {unknown}; valid values are {list(PII_TYPES)}")
    return wanted


def find_pii(text: str, types: Iterable[str] | None = None) -> list[PiiMatch]:
    """Find PII spans in `text`.

    Args:
        text: the text to search.
        types: the PII types to report (see `PII_TYPES`); None for all.

    Returns:
        Non-overlapping matches in text order.

    Raises:
        ConfigError: a type is not one of `PII_TYPES`.
    """
    wanted = _check_types(types)
    if not text:
        return []
    return [m for m in _resolve(_candidates(text)) if m.type in wanted]


def scrub(text: str, types: Iterable[str] | None = None, placeholder: str = "<{type}>") -> tuple[str, list[str]]:
    """Replace every PII span in `text` with `placeholder` formatted with its type.

    Args:
        text: the text to scrub.
        types: the PII types to replace; None for all.
        placeholder: a `str.format` template with a `{type}` field, e.g. "<{type}>" or "[REDACTED]".

    Returns:
        The scrubbed text and the type of each replaced span, in text order.
    """
    matches = find_pii(text, types)
    pieces, last = [], 0
    for m in matches:
        pieces += [text[last : m.start], placeholder.format(type=m.type)]
        last = m.end
    pieces.append(text[last:])
    return "".join(pieces), [m.type for m in matches]


# --- sanitizer step ----------------------------------------------------------------------------


@dataclass
class PiiScrub(SanitizeStep):
    """Sanitizer step: mask PII in every text field (chat: every message), or drop rows holding any.

    Args:
        types: PII types to look for (see `PII_TYPES`); None for all.
        action: "replace" rewrites the text with placeholders and marks the row modified;
            "drop" rejects the row with a reason naming the types found, sorted: "pii:EMAIL,PHONE".
        placeholder: `str.format` template with a `{type}` field.
    """

    types: list[str] | None = None
    action: str = "replace"
    placeholder: str = "<{type}>"
    name: ClassVar[str] = "pii"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.types, str):
            self.types = [self.types]
        if self.types is not None:
            self.types = [str(t).upper() for t in self.types]
            if not self.types:
                raise ConfigError(f"pii.types: empty list; use null for all of {list(PII_TYPES)}")
            _check_types(self.types)
        if self.action not in ACTIONS:
            raise ConfigError(f"pii.action: {self.action!r} is not one of {list(ACTIONS)}")
        try:
            self.placeholder.format(type="EMAIL")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"pii.placeholder: {self.placeholder!r} is not a format string with only {{type}}"
            ) from exc

    def __call__(self, table, ctx: StepContext):
        if len(table) == 0:
            return mark(table, [], [])  # `datasets.map` skips empty tables, so the columns must be added here
        return map_step(table, ctx, self._replacer(ctx) if self.action == "replace" else self._dropper(ctx))

    def _replacer(self, ctx: StepContext):
        def batch_fn(batch):
            columns, changed = map_texts(batch, ctx, lambda text: scrub(text, self.types, self.placeholder)[0])
            return {**columns, **flags(len(changed), modified=changed)}

        return batch_fn

    def _dropper(self, ctx: StepContext):
        def batch_fn(batch):
            reasons = []
            for text in row_texts(batch, ctx):
                kinds = sorted({m.type for m in find_pii(text, self.types)})
                reasons.append(f"pii:{','.join(kinds)}" if kinds else "")
            return flags(len(reasons), reasons)

        return batch_fn
