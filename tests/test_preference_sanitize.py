"""The sanitizer on preference pairs: every field cleaned, whole pairs deduplicated, ties dropped, prompts guarded."""

from __future__ import annotations

import pytest

from modelops.data.dataset import Dataset
from modelops.errors import ConfigError
from modelops.sanitize import DatasetSanitizer


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _bot(text: str) -> dict:
    return {"role": "assistant", "content": text}


def _run(rows: list[dict], steps: list, test: list[dict] | None = None) -> tuple[list[dict], dict, DatasetSanitizer]:
    """Clean `rows` (train, and `test` when given); return train's rows, its step entries by name, the sanitizer."""
    dataset = Dataset.from_records(rows)
    if test is not None:
        dataset = dataset.replace(test=Dataset.from_records(test)["train"])
    sanitizer = DatasetSanitizer(steps=steps)
    clean = sanitizer.sanitize(dataset)
    entries = {entry["step"]: entry for entry in sanitizer.report.splits["train"]["steps"]}
    return clean["train"].to_list(), entries, sanitizer


def test_normalize_rewrites_prompt_chosen_and_rejected_of_text_pairs():
    rows = [{"prompt": " What\u00a0is  2 + 2? ", "chosen": "four\u200b", "rejected": "ＦＩＶＥ\t"}]
    out, entries, _ = _run(rows, ["normalize"])
    assert out == [{"prompt": "What is 2 + 2?", "chosen": "four", "rejected": "FIVE"}]
    assert entries["normalize"]["modified"] == 1


def test_normalize_rewrites_every_message_of_chat_pairs():
    rows = [{"prompt": [_user("Hi\u00a0there ")], "chosen": [_bot(" ｙｅｓ")], "rejected": [_bot("no\u200b")]}]
    out, _, _ = _run(rows, ["normalize"])
    assert out == [{"prompt": [_user("Hi there")], "chosen": [_bot("yes")], "rejected": [_bot("no")]}]


def test_pii_is_masked_in_every_field_and_message():
    rows = [
        {
            "prompt": [_user("Mail me at ann@example.com")],
            "chosen": [_bot("Call 415-555-0134 instead")],
            "rejected": [_bot("Write to bob@example.org")],
        }
    ]
    out, entries, _ = _run(rows, [{"name": "pii", "action": "replace"}])
    assert out == [
        {
            "prompt": [_user("Mail me at <EMAIL>")],
            "chosen": [_bot("Call <PHONE> instead")],
            "rejected": [_bot("Write to <EMAIL>")],
        }
    ]
    assert entries["pii"]["modified"] == 1
    _, dropped, _ = _run(rows, [{"name": "pii", "action": "drop"}])
    assert dropped["pii"]["reasons"] == {"pii": 1}


def test_drop_ties_drops_pairs_equal_after_normalisation_and_counts_them():
    rows = [
        {"prompt": "Capital of Peru?", "chosen": "Lima", "rejected": "Lima\u200b "},  # a tie once normalised
        {"prompt": "Capital of Peru?", "chosen": "Lima", "rejected": "Quito"},
        {"prompt": [_user("2 + 2?")], "chosen": [_bot("4")], "rejected": [_bot("4\u00a0")]},
    ]
    out, entries, sanitizer = _run(rows[:2], ["normalize", "drop_ties"])
    assert out == [rows[1]]
    assert entries["drop_ties"]["reasons"] == {"tie": 1}
    assert [r["reason"] for r in sanitizer.report.rejected] == ["tie:chosen_equals_rejected"]
    out, entries, _ = _run(rows[2:], ["normalize", "drop_ties"])
    assert out == [] and entries["drop_ties"]["reasons"] == {"tie": 1}


def test_drop_ties_catches_pairs_that_pii_masking_made_equal():
    rows = [{"prompt": "Who to mail?", "chosen": "ann@example.com", "rejected": "bob@example.org"}]
    out, entries, _ = _run(rows, ["pii", "drop_ties"])
    assert out == [] and entries["drop_ties"]["reasons"] == {"tie": 1}


def test_drop_ties_refuses_other_formats():
    with pytest.raises(ConfigError, match=r"sanitizer.steps.0: step 'drop_ties' works on \['preference'\]"):
        DatasetSanitizer(steps=["drop_ties"]).sanitize(Dataset.from_records([{"text": "a", "label": "x"}]))


def test_default_sanitizer_runs_drop_ties_on_pairs_only():
    pairs = DatasetSanitizer()
    pairs.sanitize(Dataset.from_records([{"prompt": "Q?", "chosen": "a", "rejected": "b"}]))
    texts = DatasetSanitizer()
    texts.sanitize(Dataset.from_records([{"text": "a b c", "label": "x"}]))
    assert "drop_ties" in [s["step"] for s in pairs.report.splits["train"]["steps"]]
    assert "drop_ties" not in [s["step"] for s in texts.report.splits["train"]["steps"]]


def test_drop_empty_drops_an_empty_side_but_keeps_an_empty_prompt():
    rows = [
        {"prompt": "", "chosen": "a", "rejected": "b"},
        {"prompt": "Q?", "chosen": "\u200b", "rejected": "b"},  # empty once normalised
        {"prompt": [_user("Q?")], "chosen": [_bot("a")], "rejected": [_bot("\u200b")]},
    ]
    out, entries, _ = _run(rows[:2], ["normalize", "drop_empty"])
    assert out == [rows[0]] and entries["drop_empty"]["reasons"] == {"empty": 1}
    out, _, sanitizer = _run(rows[2:], ["normalize", "drop_empty"])
    assert out == [] and [r["reason"] for r in sanitizer.report.rejected] == ["empty:rejected"]


def test_exact_dedup_keys_on_the_whole_pair():
    rows = [
        {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"},
        {"prompt": "what is 2 +  2?", "chosen": "4", "rejected": "5"},  # the same pair up to case and spacing
        {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5 3"},  # same prompt, another pair: kept
        {"prompt": "What is 2 + 2?", "chosen": "4 5", "rejected": "3"},  # the same words, split elsewhere: kept
    ]
    out, entries, _ = _run(rows, [{"name": "exact_dedup", "on_conflict": "report"}])
    assert out == [rows[0], rows[2], rows[3]]
    assert entries["exact_dedup"]["reasons"] == {"duplicate": 1}
    assert entries["exact_dedup"]["conflicting_rows"] == 0


def test_a_pair_and_its_reverse_are_a_conflict():
    rows = [
        {"prompt": "Capital of Peru?", "chosen": "Lima", "rejected": "Quito"},
        {"prompt": "Capital of Peru?", "chosen": "Quito", "rejected": "Lima"},
        {"prompt": "Capital of Chile?", "chosen": "Santiago", "rejected": "Lima"},
    ]
    out, entries, _ = _run(rows, [{"name": "exact_dedup", "on_conflict": "report"}])
    assert out == rows and entries["exact_dedup"]["conflicting_rows"] == 2
    out, entries, _ = _run(rows, [{"name": "exact_dedup", "on_conflict": "drop"}])
    assert out == rows[2:] and entries["exact_dedup"]["reasons"] == {"conflict": 2}


def test_exact_dedup_counts_test_pairs_copied_from_train():
    train = [{"prompt": "Capital of Peru?", "chosen": "Lima", "rejected": "Quito"}]
    test = [train[0], {"prompt": "Capital of Peru?", "chosen": "Lima", "rejected": "Bogota"}]
    _, _, sanitizer = _run(train, ["exact_dedup"], test=test)
    entry = sanitizer.report.splits["test"]["steps"][0]
    assert entry["flagged"] == {"copy_of_train": 1} and entry["copies_of_train"] == 1


_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle on the rocky shore one night"


def test_near_dedup_compares_the_whole_pair():
    chosen = "The keeper read the note twice and then lit the lamp for a ship that never came back"
    rejected = "Once upon a time there was a lighthouse and it was tall and it was white and nothing happened"
    rows = [
        {"prompt": _PROMPT, "chosen": chosen, "rejected": rejected},
        {"prompt": _PROMPT, "chosen": chosen + " again", "rejected": rejected},  # one word more: a near copy
        {  # the same prompt with other answers is another pair
            "prompt": _PROMPT,
            "chosen": "She kept the bottle on the mantel and wrote back every winter until the sea answered her",
            "rejected": "A bottle is a container made of glass that holds liquids such as water or wine or oil",
        },
    ]
    out, entries, _ = _run(rows, [{"name": "near_dedup", "threshold": 0.8}])
    assert out == [rows[0], rows[2]]
    assert entries["near_dedup"]["reasons"] == {"near_duplicate": 1}


def test_decontamination_looks_for_eval_prompts_in_training_pairs():
    test = [
        {
            "prompt": _PROMPT,
            "chosen": "A keeper finds a bottle and reads the message inside it by lamplight",
            "rejected": "No.",
        }
    ]
    train = [
        {"prompt": "Tell me a story.", "chosen": _PROMPT.lower() + ", she wrote.", "rejected": "Sure."},  # leaks it
        {"prompt": "Summarise it.", "chosen": test[0]["chosen"], "rejected": "No."},  # a test answer, not its prompt
        {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"},
    ]  # fmt: skip
    out, entries, _ = _run(train, [{"name": "decontaminate", "ngram": 13, "min_words": 0}], test=test)
    assert out == train[1:]
    assert entries["decontaminate"]["reasons"] == {"contaminated": 1}
