"""A labelled PII corpus, generated deterministically, for measuring `modelops.sanitize.pii`.

Positives are built from each format's own definition (Luhn and ISO 7064 mod 97-10 check digits
are computed here, independently of the code under test), embedded in varied contexts. Look-alikes
are texts that share a PII type's shape but are not PII: they carry no label, so any match in them
counts against precision.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import string
from collections.abc import Callable
from typing import NamedTuple


class Sample(NamedTuple):
    text: str
    spans: list[tuple[str, int, int]]  # (type, start, end)


TYPES = ("EMAIL", "PHONE", "IPV4", "IPV6", "CREDIT_CARD", "IBAN", "SSN", "SECRET")

_LABELS = {
    "EMAIL": ["email", "e-mail address", "contact"],
    "PHONE": ["phone", "mobile number", "tel"],
    "IPV4": ["IP", "server address", "host"],
    "IPV6": ["IPv6 address", "address", "host"],
    "CREDIT_CARD": ["card", "card number", "payment card"],
    "IBAN": ["IBAN", "account", "bank account"],
    "SSN": ["SSN", "social security number", "SSN on file"],
    "SECRET": ["API key", "token", "credential"],
}

# Each context holds one `{x}`; `{label}` names the kind of value in words.
_CONTEXTS = [
    "{x}",
    "Contact: {x}",
    "Please reach out via {x} if anything changes.",
    "My {label} is {x}.",
    "The {label} ({x}) was found in the log.",
    '{{"{label}": "{x}", "ok": true}}',
    "{x} — that's the one I mentioned",
    "Old {label}: {x}; new one pending.",
    "Can you check {x}? Thanks!",
    "<td>{x}</td>",
    "Use `{x}` for now",
    "Notes:\n- {label}: {x}\n- status: active",
    "I wrote it down as {x}, then lost the paper.",
    "[{x}]",
    "value={x}&next=1",
    "'{x}' was rejected by the form",
    "{label}:\t{x}\n",
    "After the call, Maria sent {x} to the support team and closed the ticket.",
]

_WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "our",
    "team",
    "reviews",
    "quarterly",
    "results",
    "and",
    "plans",
    "the",
    "next",
    "release",
    "with",
    "careful",
    "testing",
    "of",
    "every",
    "module",
    "before",
    "shipping",
    "it",
    "to",
    "customers",
]


def _luhn_check_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return str((10 - total % 10) % 10)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _alnum(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


# --- positives ---------------------------------------------------------------------------------


def _email(rng: random.Random) -> str:
    first, last = (
        rng.choice(["john", "maria", "li", "o.connor", "anne-marie", "bob"]),
        rng.choice(["doe", "garcia", "wang", "smith", "mueller", "x"]),
    )
    local = rng.choice([f"{first}.{last}", f"{first}_{last}{rng.randint(1, 99)}", f"{first}+{last}", f"{first}{last}"])
    domain = rng.choice(["example.com", "mail.example.org", "corp.co.uk", "uni-bonn.de", "x.io", "sub.dept.gov"])
    return f"{local}@{domain}"


def _phone(rng: random.Random) -> str:
    def d(n: int) -> str:
        return _digits(rng, n)

    area, exch = f"{rng.randint(2, 9)}{d(2)}", f"{rng.randint(2, 9)}{d(2)}"
    formats = [
        f"({area}) {exch}-{d(4)}",
        f"{area}-{exch}-{d(4)}",
        f"{area}.{exch}.{d(4)}",
        f"+1 {area} {exch} {d(4)}",
        f"+1-{area}-{exch}-{d(4)}",
        f"1-800-{exch}-{d(4)}",
        f"+1{area}{exch}{d(4)}",
        f"+44 20 {d(4)} {d(4)}",
        f"+44 (0)20 {d(4)} {d(4)}",
        f"020 {d(4)} {d(4)}",
        f"07{d(3)} {d(6)}",
        f"+49 30 {d(8)}",
        f"030 {d(8)}",
        f"+49 171 {d(7)}",
        f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
        f"01 {d(2)} {d(2)} {d(2)} {d(2)}",
        f"06.{d(2)}.{d(2)}.{d(2)}.{d(2)}",
        f"+31 20 {d(3)} {d(4)}",
        f"+34 6{d(2)} {d(2)} {d(2)} {d(2)}",
        f"+39 06 {d(4)} {d(4)}",
        f"+91 98{d(3)} {d(5)}",
        f"+61 4{d(2)} {d(3)} {d(3)}",
    ]
    return rng.choice(formats)


def _ipv4(rng: random.Random) -> str:
    first = rng.choice([10, 172, 192, 8, 203, rng.randint(1, 223)])
    return ".".join(str(o) for o in [first, rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)])


def _ipv6(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return "::1"
    if kind == 1:
        return f"fe80::{rng.randrange(1 << 16):x}:{rng.randrange(1 << 16):x}"
    if kind == 2:
        return f"::ffff:{_ipv4(rng)}"
    groups = [rng.randrange(1 << 16) if rng.random() > 0.3 else 0 for _ in range(8)]
    address = ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups))
    text = address.exploded if kind == 3 else str(address)
    return text.upper() if kind == 5 else text


_CARD_BRANDS = [("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)]
_CARD_BRANDS += [("65", 16), ("3528", 16), ("36", 14), ("62", 19)]


def _card(rng: random.Random, valid: bool = True) -> str:
    prefix, length = rng.choice(_CARD_BRANDS)
    body = prefix + _digits(rng, length - len(prefix) - 1)
    check = _luhn_check_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    number = body + check
    style = rng.randrange(3)
    if style == 0 or length not in (15, 16):
        return number
    sep = rng.choice([" ", "-"])
    if length == 15:
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i : i + 4] for i in range(0, 16, 4))


# (country, length, letters at the start of the BBAN)
_IBAN_COUNTRIES = [
    ("DE", 22, 0), ("GB", 22, 4), ("FR", 27, 0), ("ES", 24, 0), ("IT", 27, 1), ("NL", 18, 4), ("BE", 16, 0),
    ("CH", 21, 0), ("AT", 20, 0), ("PL", 28, 0), ("PT", 25, 0), ("SE", 24, 0), ("NO", 15, 0), ("IE", 22, 4),
]  # fmt: skip


def _iban_check(country: str, bban: str) -> str:
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{98 - int(numeric) % 97:02d}"


def _iban(rng: random.Random, valid: bool = True) -> str:
    country, length, letters = rng.choice(_IBAN_COUNTRIES)
    bban = _alnum(rng, letters, string.ascii_uppercase) + _digits(rng, length - 4 - letters)
    check = _iban_check(country, bban)
    if not valid:
        check = rng.choice([f"{c:02d}" for c in range(2, 99) if f"{c:02d}" != check])
    iban = country + check + bban
    if rng.random() < 0.5:
        return iban
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def _ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _secret(rng: random.Random) -> str:
    kind = rng.randrange(10)
    if kind == 0:
        return rng.choice(["AKIA", "ASIA"]) + _alnum(rng, 16, string.ascii_uppercase + "234567")
    if kind == 1:
        return rng.choice(["ghp_", "gho_"]) + _alnum(rng, 36)
    if kind == 2:
        return "github_pat_" + _alnum(rng, 22) + "_" + _alnum(rng, 59)
    if kind == 3:
        return f"xox{rng.choice('abpr')}-{_digits(rng, 12)}-{_digits(rng, 13)}-{_alnum(rng, 24)}"
    if kind == 4:
        return "AIza" + _alnum(rng, 35, string.ascii_letters + string.digits + "_-")
    if kind == 5:
        return rng.choice(["sk-", "sk-proj-"]) + _alnum(rng, 48)
    if kind == 6:
        return rng.choice(["sk_live_", "pk_live_"]) + _alnum(rng, 24)
    if kind == 7:
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64url(json.dumps({"sub": _digits(rng, 8), "iat": rng.randint(10**9, 2 * 10**9)}).encode())
        return f"{header}.{payload}.{_b64url(rng.randbytes(32))}"
    label = rng.choice(["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED "])
    body = "\n".join(_b64url(rng.randbytes(48)) for _ in range(rng.randint(2, 5)))
    return f"-----BEGIN {label}PRIVATE KEY-----\n{body}\n-----END {label}PRIVATE KEY-----"


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "EMAIL": _email,
    "PHONE": _phone,
    "IPV4": _ipv4,
    "IPV6": _ipv6,
    "CREDIT_CARD": _card,
    "IBAN": _iban,
    "SSN": _ssn,
    "SECRET": _secret,
}


def _embed(rng: random.Random, kind: str, value: str) -> Sample:
    context = rng.choice(_CONTEXTS)
    head, tail = context.split("{x}")
    head = head.format(label=rng.choice(_LABELS[kind]))
    tail = tail.replace("{{", "{").replace("}}", "}")
    return Sample(head + value + tail, [(kind, len(head), len(head) + len(value))])


def _combined(rng: random.Random) -> Sample:
    """Several PII values of different types in one text, with filler words between them."""
    text, spans = "", []
    for kind in rng.sample(TYPES, rng.randint(2, 4)):
        text += " ".join(rng.choices(_WORDS, k=rng.randint(2, 6))) + f" {rng.choice(_LABELS[kind])} "
        value = GENERATORS[kind](rng)
        spans.append((kind, len(text), len(text) + len(value)))
        text += value + rng.choice([", ", ". ", "; ", "\n"])
    return Sample(text, spans)


# --- look-alikes -------------------------------------------------------------------------------


def _isbn13(rng: random.Random) -> str:
    body = "978" + _digits(rng, 9)
    check = (10 - sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body)) % 10) % 10
    number = body + str(check)
    if rng.random() < 0.5:
        return number
    return f"{number[:3]}-{number[3]}-{number[4:6]}-{number[6:12]}-{number[12]}"


def _isbn10(rng: random.Random) -> str:
    body = _digits(rng, 9)
    check = (11 - sum(int(c) * (10 - i) for i, c in enumerate(body)) % 11) % 11
    return f"{body[0]}-{body[1:4]}-{body[4:9]}-{'X' if check == 10 else check}"


def _bad_ssn(rng: random.Random) -> str:
    area, group, serial = f"{rng.randint(1, 899):03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"
    area = area if area != "666" else "123"
    which = rng.randrange(5)
    if which == 0:
        area = "000"
    elif which == 1:
        area = "666"
    elif which == 2:
        area = f"9{rng.randint(0, 99):02d}"
    elif which == 3:
        group = "00"
    else:
        serial = "0000"
    return f"{area}-{group}-{serial}"


def _bad_ip(rng: random.Random) -> str:
    octets = [rng.randint(0, 255) for _ in range(4)]
    which = rng.randrange(3)
    if which == 0:
        octets[rng.randrange(4)] = rng.randint(256, 999)
        return ".".join(map(str, octets))
    if which == 1:
        return ".".join(map(str, octets[:3]))
    return ".".join(map(str, [*octets, rng.randint(0, 255)]))


def _mac(rng: random.Random) -> str:
    return ":".join(f"{rng.randrange(256):02X}" for _ in range(6))


_LOOKALIKES: dict[str, tuple[str, Callable[[random.Random], str]]] = {
    "luhn_invalid_card": ("Reference number {x} in our ledger.", lambda r: _card(r, valid=False)),
    "bad_iban_checksum": ("Transfer to {x} bounced.", lambda r: _iban(r, valid=False)),
    "version_quad": (
        "{x} is out.",
        lambda r: (
            r.choice(["v", "version ", "Version ", "release ", "build "])
            + ".".join(str(r.randint(0, 20)) for _ in range(4))
        ),
    ),
    "version_build": ("Updated Windows to {x} today.", lambda r: f"v10.0.{r.randint(10000, 22999)}"),
    "iso_date": ("Due on {x}.", lambda r: f"{r.randint(1990, 2030)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"),
    "us_date": ("Signed {x}", lambda r: f"{r.randint(1, 12)}/{r.randint(1, 31)}/{r.randint(1990, 2030)}"),
    "eu_date": (
        "Am {x} geliefert.",
        lambda r: f"{r.randint(1, 28):02d}.{r.randint(1, 12):02d}.{r.randint(1990, 2030)}",
    ),
    "datetime": (
        "Logged at {x} UTC",
        lambda r: (
            f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} {r.randint(0, 23):02d}:{r.randint(0, 59):02d}:"
            f"{r.randint(0, 59):02d}"
        ),
    ),
    "time": ("Meeting at {x} sharp", lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}"),
    "price": (
        "It costs {x} including tax.",
        lambda r: r.choice(["$", "€", "£ ", "USD "]) + f"{r.randint(1, 99999):,}.{r.randint(0, 99):02d}",
    ),
    "order_id": (
        "Your order {x} has shipped.",
        lambda r: r.choice([f"ORD-{r.randint(2015, 2025)}-{r.randint(0, 999999):06d}", f"#{r.randint(0, 10**8):08d}"]),
    ),
    "invoice": (
        "Invoice {x} attached",
        lambda r: r.choice([f"INV-{r.randint(0, 10**8):08d}", f"PO {r.randint(0, 10**10)}"]),
    ),
    "isbn13": ("ISBN {x}", _isbn13),
    "isbn10": ("See ISBN-10 {x} in the catalogue", _isbn10),
    "invalid_ip": ("Bad host {x} in config", _bad_ip),
    "invalid_ssn": ("Form field: {x}", _bad_ssn),
    "mac_address": ("Device MAC {x} registered", _mac),
    "score": ("Final score {x} after extra time", lambda r: f"{r.randint(0, 9)}-{r.randint(0, 9)}"),
    "ratio": ("Mix at {x} ratio", lambda r: f"{r.randint(1, 9)}:{r.randint(1, 9)}"),
    "uuid": ("Request id {x} failed", lambda r: str(__import__("uuid").UUID(int=r.getrandbits(128)))),
    "hash": ("Commit {x} fixed it", lambda r: f"{r.getrandbits(160):040x}"),
    "coordinates": ("Located at {x}", lambda r: f"{r.uniform(-90, 90):.4f}, {r.uniform(-180, 180):.4f}"),
    "big_number": ("Revenue was {x} dollars", lambda r: f"{r.randint(10**6, 10**12):,}"),
    "semver": ("Requires Python {x} or later", lambda r: f"{r.randint(2, 3)}.{r.randint(0, 13)}.{r.randint(0, 20)}"),
    "short_local_number": ("Dial {x} from inside", lambda r: f"{r.randint(200, 999)}-{r.randint(0, 9999):04d}"),
    "prose": ("{x}", lambda r: " ".join(r.choices(_WORDS, k=r.randint(5, 20))).capitalize() + "."),
    "tool_names": (
        "{x}",
        lambda r: r.choice(["We use sk-learn-compatible estimators.", "The AKIA prefix marks keys.", "Say eyJ twice."]),
    ),
}


def build_corpus(seed: int = 1234, per_type: int = 300, per_lookalike: int = 40, combined: int = 200) -> list[Sample]:
    """The whole labelled corpus: positives per type, texts mixing types, and unlabelled look-alikes."""
    rng = random.Random(seed)
    samples = [_embed(rng, kind, GENERATORS[kind](rng)) for kind in TYPES for _ in range(per_type)]
    samples += [_combined(rng) for _ in range(combined)]
    for context, make in _LOOKALIKES.values():
        samples += [Sample(context.replace("{x}", make(rng)), []) for _ in range(per_lookalike)]
    return samples


def lookalike_samples(seed: int = 99, per_lookalike: int = 40) -> dict[str, list[str]]:
    """Look-alike texts by category, for asserting that none of them matches anything."""
    rng = random.Random(seed)
    return {
        name: [context.replace("{x}", make(rng)) for _ in range(per_lookalike)]
        for name, (context, make) in _LOOKALIKES.items()
    }
