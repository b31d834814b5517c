"""PII detection measured on a labelled, seeded corpus, plus the `PiiScrub` sanitizer step."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import pytest

from modelops.errors import ConfigError
from modelops.sanitize.pii import PII_TYPES, PiiScrub, find_pii, scrub
from modelops.sanitize.step import MODIFIED, REASON, StepContext
from tests.pii_corpus import TYPES, build_corpus, lookalike_samples

# --- precision / recall on the labelled corpus -------------------------------------------------


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


@pytest.fixture(scope="module")
def scores() -> dict[str, tuple[float, float]]:
    """Per type: precision (matches overlapping a labelled span of that type) and recall (spans found)."""
    true_pos, predicted, found, labelled = Counter(), Counter(), Counter(), Counter()
    for sample in build_corpus():
        matches = find_pii(sample.text)
        for m in matches:
            predicted[m.type] += 1
            true_pos[m.type] += any(t == m.type and _overlaps(m.start, m.end, s, e) for t, s, e in sample.spans)
        for t, s, e in sample.spans:
            labelled[t] += 1
            found[t] += any(m.type == t and _overlaps(m.start, m.end, s, e) for m in matches)
    return {t: (true_pos[t] / max(predicted[t], 1), found[t] / labelled[t]) for t in TYPES}


def test_corpus_covers_every_type() -> None:
    counts = Counter(t for sample in build_corpus() for t, _, _ in sample.spans)
    assert set(counts) == set(PII_TYPES)
    assert min(counts.values()) >= 300


@pytest.mark.parametrize("pii_type", TYPES)
def test_precision_and_recall(scores, pii_type: str) -> None:
    precision, recall = scores[pii_type]
    assert precision >= 0.95, f"{pii_type} precision {precision:.3f}"
    assert recall >= 0.95, f"{pii_type} recall {recall:.3f}"


@pytest.mark.parametrize("category", sorted(lookalike_samples()))
def test_lookalikes_rarely_match(category: str) -> None:
    texts = lookalike_samples()[category]
    hits = [(t, find_pii(t)) for t in texts if find_pii(t)]
    assert len(hits) <= 0.05 * len(texts), hits[:3]


# --- independent reference values --------------------------------------------------------------

# Test card numbers published by card networks / payment processors (all Luhn-valid).
_PUBLISHED_CARDS = [
    "4111111111111111", "4012888888881881", "4222222222222", "5555555555554444", "5105105105105100",
    "2223000048400011", "378282246310005", "371449635398431", "6011111111111117", "6011000990139424",
    "3530111333300000", "30569309025904", "38520000023237",
]  # fmt: skip

# Example IBANs from the ISO 13616 / SWIFT IBAN registry.
_PUBLISHED_IBANS = [
    "DE89 3704 0044 0532 0130 00", "GB82 WEST 1234 5698 7654 32", "FR14 2004 1010 0505 0001 3M02 606",
    "NL91 ABNA 0417 1643 00", "BE68 5390 0754 7034", "CH93 0076 2011 6238 5295 7", "ES91 2100 0418 4502 0005 1332",
    "IT60 X054 2811 1010 0000 0123 456", "AT61 1904 3002 3457 3201", "NO93 8601 1117 947",
    "PL61 1090 1014 0000 0712 1981 2874", "SE45 5000 0000 0583 9825 7466", "DK50 0040 0440 1162 43",
    "FI21 1234 5600 0007 85", "IE29 AIBK 9311 5212 3456 78", "LU28 0019 4006 4475 0000",
]  # fmt: skip


def _only(text: str) -> list[tuple[str, str]]:
    return [(m.type, text[m.start : m.end]) for m in find_pii(text)]


@pytest.mark.parametrize("number", _PUBLISHED_CARDS)
def test_published_card_numbers(number: str) -> None:
    assert _only(f"paid with {number} yesterday") == [("CREDIT_CARD", number)]
    broken = number[:-1] + str((int(number[-1]) + 5) % 10)  # a single changed digit breaks Luhn
    assert _only(f"paid with {broken} yesterday") == []


@pytest.mark.parametrize("iban", _PUBLISHED_IBANS)
def test_published_ibans(iban: str) -> None:
    compact = iban.replace(" ", "")
    assert _only(f"send to {iban} today") == [("IBAN", iban)]
    assert _only(f"send to {compact}.") == [("IBAN", compact)]
    swapped = compact[:4] + compact[5] + compact[4] + compact[6:]  # mod 97 catches a transposition
    if swapped != compact:
        assert [t for t, _ in _only(f"send to {swapped}.")] != ["IBAN"]


@pytest.mark.parametrize(
    ("ssn", "valid"),
    [
        ("001-01-0001", True), ("665-12-3456", True), ("667-12-3456", True), ("899-99-9999", True),
        ("000-12-3456", False), ("666-12-3456", False), ("900-12-3456", False), ("999-12-3456", False),
        ("123-00-4567", False), ("123-45-0000", False),
    ],
)  # fmt: skip
def test_ssn_ranges(ssn: str, valid: bool) -> None:
    assert _only(f"SSN {ssn} on file") == ([("SSN", ssn)] if valid else [])


def test_ipv6_agrees_with_ipaddress() -> None:
    rng = random.Random(7)
    hexdigits = "0123456789abcdef"
    for _ in range(500):
        groups = ["".join(rng.choices(hexdigits, k=rng.randint(0, 5))) for _ in range(rng.randint(3, 9))]
        candidate = ":".join(groups)
        try:
            ipaddress.IPv6Address(candidate)
            expected = [("IPV6", candidate)]
        except ValueError:
            expected = []
        if not candidate.strip(":") or candidate.startswith(":::"):
            continue  # degenerate strings of colons are not interesting either way
        got = [x for x in _only(f"host {candidate} up") if x[0] == "IPV6"]
        assert got == expected, candidate


@pytest.mark.parametrize(
    ("address", "valid"),
    [("0.0.0.0", True), ("255.255.255.255", True), ("10.0.0.1", True), ("256.1.1.1", False), ("999.1.1.1", False),
     ("1.2.3", False), ("01.2.3.4", False), ("1.2.3.4.5", False)],
)  # fmt: skip
def test_ipv4_octets(address: str, valid: bool) -> None:
    assert _only(f"ping {address} now") == ([("IPV4", address)] if valid else [])


def test_version_strings_are_not_ips() -> None:
    for text in ["upgrade to v1.2.3.4", "version 1.2.3.4 is out", "Windows v10.0.19041", "build 10.0.19041.1"]:
        assert _only(text) == [], text


# --- scrub -------------------------------------------------------------------------------------


def _replace_spans(text: str, spans: list[tuple[str, int, int]], placeholder: str) -> str:
    for kind, start, end in sorted(spans, key=lambda s: -s[1]):
        text = text[:start] + placeholder.format(type=kind) + text[end:]
    return text


def test_scrub_replaces_labelled_spans_with_typed_placeholders() -> None:
    samples = [s for s in build_corpus(seed=5, per_type=40, per_lookalike=0, combined=100) if s.spans]
    exact = sum(scrub(s.text)[0] == _replace_spans(s.text, s.spans, "<{type}>") for s in samples)
    assert exact >= 0.95 * len(samples)
    text = "Mail ann@example.com or call +44 20 7946 0958; card 4111-1111-1111-1111."
    assert scrub(text) == ("Mail <EMAIL> or call <PHONE>; card <CREDIT_CARD>.", ["EMAIL", "PHONE", "CREDIT_CARD"])
    assert scrub(text, placeholder="[{type}]")[0] == "Mail [EMAIL] or call [PHONE]; card [CREDIT_CARD]."
    assert scrub(text, placeholder="***")[0] == "Mail *** or call ***; card ***."
    assert scrub(text, types=["email"]) == (
        "Mail <EMAIL> or call +44 20 7946 0958; card 4111-1111-1111-1111.",
        ["EMAIL"],
    )
    assert scrub("nothing to see here") == ("nothing to see here", [])
    assert scrub("") == ("", [])


def test_scrub_masks_a_whole_pem_block() -> None:
    text = "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nx7Yz\n-----END RSA PRIVATE KEY-----\nbye"
    assert scrub(text)[0] == "key:\n<SECRET>\nbye"


def test_find_pii_rejects_unknown_type() -> None:
    with pytest.raises(ConfigError, match=r"pii\.types.*PASSPORT.*EMAIL"):
        find_pii("x", types=["PASSPORT"])


# --- the sanitizer step ------------------------------------------------------------------------

_ROWS = [
    {"text": "Write to ann@example.com or call (415) 555-2671.", "label": 0},
    {"text": "A perfectly ordinary review of the film.", "label": 1},
    {"text": "Server 10.0.0.12 leaked AKIAIOSFODNN7EXAMPLE", "label": 0},
]


def _table(rows):
    import datasets

    return datasets.Dataset.from_list(rows)


def test_step_replace_classification() -> None:
    table = _table(_ROWS)
    before = table.to_list()
    out = PiiScrub()(table, StepContext(format="classification"))
    assert out["text"] == [
        "Write to <EMAIL> or call <PHONE>.",
        "A perfectly ordinary review of the film.",
        "Server <IPV4> leaked <SECRET>",
    ]
    assert out[REASON] == ["", "", ""]
    assert out[MODIFIED] == [True, False, True]
    assert out["label"] == [0, 1, 0]
    assert table.to_list() == before


def test_step_drop_classification() -> None:
    table = _table(_ROWS)
    before = table.to_list()
    out = PiiScrub(action="drop")(table, StepContext(format="classification"))
    assert out[REASON] == ["pii:EMAIL,PHONE", "", "pii:IPV4,SECRET"]
    assert out[MODIFIED] == [False, False, False]
    assert out["text"] == [r["text"] for r in _ROWS]
    assert table.to_list() == before


def test_step_types_restrict_what_is_touched() -> None:
    out = PiiScrub(types=["PHONE"])(_table(_ROWS), StepContext(format="classification"))
    assert out["text"][0] == "Write to ann@example.com or call <PHONE>."
    assert out[MODIFIED] == [True, False, False]


_CHAT = [
    {
        "messages": [
            {"role": "user", "content": "My email is bob@corp.co.uk, fix my account"},
            {"role": "assistant", "content": "Sure. Is your SSN 123-45-6789?"},
        ]
    },
    {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hi! How can I help?"}]},
]


def test_step_replace_chat() -> None:
    table = _table(_CHAT)
    before = table.to_list()
    out = PiiScrub(placeholder="[{type}]")(table, StepContext(format="chat"))
    assert out["messages"][0] == [
        {"role": "user", "content": "My email is [EMAIL], fix my account"},
        {"role": "assistant", "content": "Sure. Is your SSN [SSN]?"},
    ]
    assert out["messages"][1] == _CHAT[1]["messages"]
    assert out[MODIFIED] == [True, False]
    assert out[REASON] == ["", ""]
    assert table.to_list() == before


def test_step_drop_chat() -> None:
    out = PiiScrub(action="drop")(_table(_CHAT), StepContext(format="chat"))
    assert out[REASON] == ["pii:EMAIL,SSN", ""]
    assert out["messages"] == [r["messages"] for r in _CHAT]


def test_step_on_empty_table_adds_columns() -> None:
    import datasets

    out = PiiScrub()(datasets.Dataset.from_dict({"text": []}), StepContext())
    assert REASON in out.column_names and MODIFIED in out.column_names and len(out) == 0


def test_step_in_the_sanitizer() -> None:
    from modelops.data.dataset import Dataset
    from modelops.sanitize.sanitizer import DatasetSanitizer

    dataset = Dataset.from_records(_ROWS)
    sanitizer = DatasetSanitizer(steps=[PiiScrub(action="drop", types=["SECRET"])])
    clean = sanitizer.sanitize(dataset)
    assert clean["train"]["text"] == [_ROWS[0]["text"], _ROWS[1]["text"]]
    assert sanitizer.report.rejected[0]["reason"] == "pii:SECRET"


@pytest.mark.parametrize(
    ("kwargs", "field", "listed"),
    [
        ({"types": ["EMAIL", "PASSPORT"]}, "pii.types", "CREDIT_CARD"),
        ({"types": []}, "pii.types", "EMAIL"),
        ({"action": "mask"}, "pii.action", "replace"),
        ({"placeholder": "<{kind}>"}, "pii.placeholder", "{type}"),
        ({"placeholder": "<{type"}, "pii.placeholder", "{type}"),
    ],
)
def test_step_bad_parameters(kwargs: dict, field: str, listed: str) -> None:
    with pytest.raises(ConfigError) as info:
        PiiScrub(**kwargs)
    assert field in str(info.value) and listed in str(info.value)
