"""The bad-input corpus: each case run through the real CLI gets one clear message naming the cause
and the place, a non-zero exit, no traceback, and leaves what was already written intact.

Data cases use the files in tests/bad_input/ (and one generated 50 MB line); config and model cases
are command-line overrides of the default recipe.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BAD = Path(__file__).resolve().parent / "bad_input"
FAST = ["stages=[sanitize]"]


def _files(*pairs: str) -> list[str]:
    """`dataset=files` overrides: "train=malformed_line.jsonl" -> dataset.train=<corpus path>."""
    out = ["dataset=files"]
    for pair in pairs:
        split, name = pair.split("=", 1)
        out.append(f"dataset.{split}={BAD / name}" if "/" not in name else f"dataset.{split}={name}")
    return out


# (case id, overrides, substrings the message must contain)
CASES = [
    # data files
    ("malformed_json_line", _files("train=malformed_line.jsonl") + FAST, ["malformed_line.jsonl:3", "not valid JSON"]),
    ("value_not_an_object", _files("train=not_an_object.jsonl") + FAST, ["not_an_object.jsonl:2", "JSON object"]),
    ("missing_field", _files("train=missing_label.jsonl") + FAST, ["missing_label.jsonl:2", "'label'"]),
    ("label_is_a_list", _files("train=label_is_list.jsonl") + FAST, ["label_is_list.jsonl:2", "'label'", "list"]),
    ("text_is_a_number", _files("train=text_is_number.jsonl") + FAST, ["text_is_number.jsonl:1", "'text'"]),
    ("messages_not_a_list", _files("train=messages_not_list.jsonl") + FAST, ["messages_not_list.jsonl:2", "messages"]),
    ("role_outside_the_set", _files("train=bad_role.jsonl") + FAST, ["bad_role.jsonl:2", "wizard", "role"]),
    ("empty_file", _files("train=empty.jsonl") + FAST, ["empty.jsonl", "empty"]),
    ("file_does_not_exist", _files("train=/no/such/train.jsonl") + FAST, ["/no/such/train.jsonl", "not found"]),
    ("undecodable_bytes", _files("train=undecodable.jsonl") + FAST, ["undecodable.jsonl:2", "UTF-8"]),
    ("format_not_detectable", _files("train=undetectable.jsonl") + FAST, ["undetectable.jsonl", "utterance", "tried"]),
    ("declared_format_lacks_field", [*_files("train=undetectable.jsonl"), "dataset.format=classification", *FAST],
     ["undetectable.jsonl:1", "'text'"]),
    ("unknown_label_in_test_split", _files("train=train.jsonl", "test=test_unknown_label.jsonl") + FAST,
     ["test_unknown_label.jsonl", "neutral", "label"]),
    ("csv_short_row", _files("train=short_row.csv") + FAST, ["short_row.csv:3", "fields"]),
    ("csv_missing_column", _files("train=missing_column.csv") + FAST, ["missing_column.csv", "utterance"]),
    ("corrupt_parquet", _files("train=corrupt.parquet") + FAST, ["corrupt.parquet", "Parquet"]),
    ("empty_after_sanitizing", _files("train=all_blank.jsonl") + FAST, ["no rows left", "rejected.jsonl"]),
    # config
    ("unknown_key_did_you_mean", ["+trainer.learnig_rate=0.1"],
     ["trainer.learnig_rate", "did you mean 'learning_rate'"]),
    ("unknown_top_level_key", ["+trainr.epochs=1"], ["trainr", "did you mean 'trainer'"]),
    ("wrong_type", ["trainer.epochs=three"], ["trainer.epochs", "int"]),
    ("negative_learning_rate", ["trainer.learning_rate=-1e-4"], ["trainer.learning_rate", "> 0"]),
    ("zero_epochs", ["trainer.epochs=0"], ["trainer.epochs", ">= 1"]),
    ("batch_size_zero", ["trainer.batch_size=0"], ["trainer.batch_size", ">= 1"]),
    ("lora_rank_zero", ["model.peft.r=0"], ["model.peft.r", ">= 1"]),
    ("unknown_eval_metric", ["evaluator.metrics=[acuracy]"], ["evaluator.metrics", "acuracy", "accuracy"]),
    ("missing_required_value", ["dataset=files"], ["dataset.train"]),
    ("unknown_stage", ["stages=[sanitize,trian]"], ["stages", "trian", "did you mean 'train'"]),
    ("target_outside_allowlist", ["trainer._target_=os.system"], ["trainer._target_", "os.system", "allowed"]),
    ("unknown_group_option", ["model=no_such_model"], ["no_such_model", "minilm_cls"]),
    ("unknown_recipe", ["+recipe=no_such_recipe"], ["no_such_recipe", "lora_small"]),
    ("sanitizer_threshold_out_of_range", ["sanitizer=strict", "sanitizer.steps.4.threshold=1.5"], ["threshold"]),
    ("unknown_sanitizer_step", ["sanitizer.steps=[{name: normalise}]"], ["normalise", "normalize"]),
    # models
    ("model_path_missing", ["model.name_or_path=/no/such/model", "stages=[train]"],
     ["/no/such/model", "local directory"]),
    # issue 24: the second bad-input round
    ("csv_duplicate_column_names", _files("train=duplicate_columns.csv") + FAST,
     ["duplicate_columns.csv:1", "'text'", "more than once"]),
    ("json_field_named_twice", _files("train=duplicate_key.jsonl") + FAST,
     ["duplicate_key.jsonl:2", "'text'", "more than once"]),
    ("empty_label", _files("train=empty_label.jsonl") + FAST, ["empty_label.jsonl:2", "'label'", "empty"]),
    ("one_class_classifier", [*_files("train=one_class.jsonl"), "stages=[sanitize,train]"],
     ["two classes", "pos"]),
    ("error_inside_gzip_names_the_line", _files("train=bad_line.jsonl.gz") + FAST,
     ["bad_line.jsonl.gz:3", "not valid JSON"]),
    ("gz_name_but_not_gzip", _files("train=not_gzip.jsonl.gz") + FAST, ["not_gzip.jsonl.gz", "gzip"]),
    ("other_delimiter", _files("train=semicolon.csv") + FAST, ["semicolon.csv", "delimiter=';'"]),
    ("latin1_encoding", _files("train=latin1.jsonl") + FAST, ["latin1.jsonl:2", "UTF-8", "Windows-1252", "iconv"]),
    ("json_array_as_jsonl", _files("train=array.jsonl") + FAST, ["array.jsonl:1", "JSON array", ".json"]),
    ("directory_not_a_model", [f"model.name_or_path={BAD / 'not_a_model'}", "stages=[train]"],
     ["not_a_model", "not a model", "config.json"]),
    ("train_empty_beside_test", [*_files("test=train.jsonl"), "dataset.train=", "stages=[sanitize,train]"],
     ["dataset.train", "empty", "stages"]),
    ("tracking_uri_bare_path", ["tracking.uri=mlruns", *FAST], ["'mlruns'", "not a tracking URI", "sqlite:///"]),
    ("resume_path_missing", ["trainer.resume=/no/such/checkpoint", "stages=[train]"],
     ["trainer.resume", "/no/such/checkpoint", "does not exist"]),
]  # fmt: skip


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("MODELOPS_DEBUG", None)
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "modelops", "+recipe=lora_small", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_message(tmp_path, overrides, expected):
    proc = _cli(overrides, tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in proc.stderr, f"{text!r} not in: {proc.stderr[-1500:]}"


@pytest.mark.slow
def test_config_errors_of_this_round_write_nothing(tmp_path):
    for overrides in ([f"model.name_or_path={BAD / 'not_a_model'}"], ["trainer.resume=/no/such/checkpoint"],
                      [*_files("test=train.jsonl"), "dataset.train="]):  # fmt: skip
        proc = _cli(overrides, tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert not (tmp_path / "outputs").exists()  # refused before Hydra made a run directory


@pytest.mark.slow
def test_a_compressed_file_is_read_by_the_cli_as_by_python(tmp_path):
    from modelops import Dataset

    proc = _cli(_files("train=train.jsonl.gz") + FAST + ["tracking=none"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = list((tmp_path / "outputs").glob("????-??-??/*"))
    lineage = json.loads((run_dir / "data" / "lineage.json").read_text())
    python = Dataset.from_jsonl(BAD / "train.jsonl.gz")
    assert lineage["loaded"]["train"] == python.lineage()["train"] and python.lineage()["train"]["rows"] == 24


@pytest.mark.slow
def test_labels_differing_by_case_are_named_and_merged_only_when_asked(tmp_path):
    proc = _cli(_files("train=label_case.jsonl") + FAST + ["tracking=none"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'Positive' (" in proc.stderr and "label_case.jsonl:3" in proc.stderr
    assert "label_case.jsonl:1" in proc.stderr and "differ only by case" in proc.stderr
    assert "label_spaces_stripped=1" in proc.stdout
    merged = _cli(_files("train=label_case.jsonl") + FAST + ["tracking=none", "dataset.lowercase_labels=true"],
                  tmp_path)  # fmt: skip
    assert merged.returncode == 0 and "differ only by case" not in merged.stderr
    assert "label_lowercased=1" in merged.stdout


@pytest.mark.slow
def test_spaces_around_csv_header_names_are_dropped_and_said(tmp_path):
    proc = _cli(_files("train=spaced_header.csv") + FAST + ["tracking=none"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "spaces around header names dropped" in proc.stdout and "' label'" in proc.stdout


def test_a_split_that_cannot_be_stratified_is_named():
    from modelops import Dataset

    rows = [{"text": f"row {i}", "label": "common"} for i in range(9)] + [{"text": "rare", "label": "rare"}]
    with pytest.warns(UserWarning, match=r"could not stratify.*'rare' \(1 row\(s\); none in \['validation'\]\)"):
        Dataset.from_records(rows).split(validation=0.2, seed=0)


def test_save_writes_what_the_name_says_and_refuses_unknown_names(tmp_path):
    import bz2
    import gzip

    from modelops import Dataset
    from modelops.errors import DataError

    dataset = Dataset.from_records([{"text": "un café", "label": "pos"}, {"text": "b", "label": "neg"}])
    dataset.save(tmp_path / "clean.jsonl.gz")
    lines = gzip.decompress((tmp_path / "clean.jsonl.gz").read_bytes()).decode().splitlines()
    assert [json.loads(line) for line in lines] == dataset.to_list()  # read by the standard library
    dataset.save(tmp_path / "clean.csv.bz2")
    assert bz2.decompress((tmp_path / "clean.csv.bz2").read_bytes()).decode().splitlines()[0] == '"text","label"'
    for name in ("clean.csv.bz2", "clean.jsonl.gz"):
        assert Dataset.from_files(train=tmp_path / name).to_list() == dataset.to_list()
    for name in ("clean.txt", "clean", "clean.parquet.gz"):
        with pytest.raises(DataError, match="save"):
            dataset.save(tmp_path / name)
        assert not (tmp_path / name).exists()


def test_card_and_iban_look_alikes_are_not_scrubbed():
    from modelops.sanitize.pii import find_pii

    # 4111 1111 1111 1111 is the usual Visa test number (Luhn-valid); ...1112 fails the check.
    assert [m.type for m in find_pii("card 4111 1111 1111 1111 ok")] == ["CREDIT_CARD"]
    assert find_pii("ref 4111 1111 1111 1112 ok") == []
    # GB82 WEST 1234 5698 7654 32 is the ISO 13616 example IBAN; changing its last digit breaks mod 97.
    assert [m.type for m in find_pii("iban GB82 WEST 1234 5698 7654 32")] == ["IBAN"]
    assert find_pii("iban GB82 WEST 1234 5698 7654 33") == []


@pytest.mark.slow
def test_bom_is_accepted(tmp_path):
    proc = _cli(_files("train=bom.jsonl") + FAST, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_a_50_mb_line_loads_and_strict_length_limits_reject_it(tmp_path):
    big = tmp_path / "big.jsonl"
    with big.open("w") as fh:
        fh.write(json.dumps({"text": "word " * 10_000_000, "label": "pos"}) + "\n")
        fh.write(json.dumps({"text": "a fine short review", "label": "neg"}) + "\n")
    assert big.stat().st_size > 50_000_000
    proc = _cli([*_files(f"train={big}"), "sanitizer=strict", *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = list((tmp_path / "outputs").glob("????-??-??/*"))
    rejected = [json.loads(line) for line in (run_dir / "data" / "rejected.jsonl").open()]
    assert [r["step"] for r in rejected] == ["length"] and "too_long" in rejected[0]["reason"]


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.mark.slow
def test_a_failed_run_leaves_earlier_results_intact(tmp_path):
    run_dir = tmp_path / "outputs" / "earlier"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "model" / "adapter_model.safetensors").write_bytes(b"weights of an earlier run")
    (run_dir / "eval.json").write_text('{"fine_tuned": {"metrics": {"accuracy": 0.9}}}\n')
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    before = _digest(run_dir)
    # A config error stops before Hydra touches the directory: nothing is written there.
    proc = _cli(["hydra.run.dir=outputs/earlier", "trainer.learning_rate=-1"], tmp_path)
    assert proc.returncode == 2 and "trainer.learning_rate" in proc.stderr
    assert _digest(run_dir) == before
    # A data error fails inside the run: the failure is recorded beside the earlier files, which stay as they were.
    proc = _cli(["hydra.run.dir=outputs/earlier", *_files("train=malformed_line.jsonl"), *FAST], tmp_path)
    assert proc.returncode == 2 and "malformed_line.jsonl" in proc.stderr
    after = _digest(run_dir)
    assert {k: v for k, v in after.items() if k in before} == before
    assert json.loads((run_dir / "job.json").read_text())["status"] == "failed"


TINY_LM = ["model=tiny_llama", "dataset=text_demo", "dataset.n=40", "trainer.max_steps=2", "trainer.batch_size=4",
           "evaluator=lm", "stages=[train]"]  # fmt: skip


@pytest.mark.slow
def test_a_tokenizer_without_a_pad_token_is_handled(tmp_path):
    import shutil

    from modelops.models.tiny import tiny_model_path

    model_dir = tmp_path / "no-pad"
    shutil.copytree(tiny_model_path("tiny-gpt2"), model_dir)
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("pad_token", None)
    config_path.write_text(json.dumps(config))
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(model_dir).pad_token is None
    proc = _cli([*TINY_LM, f"model.name_or_path={model_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_a_sequence_longer_than_the_context_is_truncated_or_rejected(tmp_path):
    fresh = f"trainer.cache_dir={tmp_path / 'cache'}"  # tokenise here: a cached result would not warn again
    truncated = _cli([*TINY_LM, "model.max_length=16", fresh], tmp_path)
    assert truncated.returncode == 0, truncated.stderr[-2000:]
    assert "truncated" in truncated.stderr
    rejected = _cli([*TINY_LM, "model.max_length=16", "trainer.too_long=reject", fresh], tmp_path)
    assert rejected.returncode == 2 and "Traceback" not in rejected.stderr
    assert "row" in rejected.stderr and "max_length" in rejected.stderr
