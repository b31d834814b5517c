"""Property-based bad input: generated data files, malformed and unusual, through loading, sanitizing and the CLI.

Every generated file (JSON Lines, CSV/TSV or a JSON array; plain or compressed; UTF-8, with a BOM,
Windows-1252 or UTF-16; the delimiter assumed or another; with ragged rows, fields named twice,
labels that differ by case or spaces, empty labels, bad lines) must end in one of two ways:

- success, where every record written is either a row of the dataset or a skipped row counted in the
  load report (and the sanitizer's report accounts for every row it drops), with labels stripped and
  the stripped ones counted; or
- one `DataError` naming the file (and, for a bad record, its line), never another exception.

The model of what each file holds (`Spec`) is built here, independently of the loaders: which
records are good, which line is the first bad one, how many labels carry spaces.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from modelops import Dataset, DatasetSanitizer  # noqa: E402
from modelops.errors import DataError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["pos", "neg", "Pos", " pos", "neg ", "NEG", "", "  ", "very good"]
# Letters, digits, punctuation that CSV must quote, and characters outside Latin-1; no line breaks.
TEXT = st.text(alphabet=st.sampled_from(list("abcXYZ 019,;|\t\"'{}[]:éüß中😀")), min_size=0, max_size=12)
BAD_JSONL = {
    "malformed": '{"text": "x", "label"',
    "not_object": "[1, 2]",
    "missing_label": '{"text": "x"}',
    "label_is_list": '{"text": "x", "label": ["a"]}',
    "duplicate_field": '{"text": "x", "label": "pos", "text": "y"}',
}


@dataclass
class Spec:
    """A generated file and what it holds, as this test knows it."""

    kind: str  # jsonl | csv | tsv | json
    rows: list[tuple[str, str]]
    bad: dict[int, str] = field(default_factory=dict)  # record index -> injected kind of bad record
    encoding: str = "utf-8"  # utf-8 | utf-8-sig | cp1252 | utf-16
    compression: str | None = None  # gz | bz2 | None
    wrong_delimiter: bool = False
    duplicate_header: bool = False
    blank_lines: bool = False

    @property
    def name(self) -> str:
        suffix = {"jsonl": ".jsonl", "csv": ".csv", "tsv": ".tsv", "json": ".json"}[self.kind]
        return f"data{suffix}" + (f".{self.compression}" if self.compression else "")

    def record_ok(self, i: int) -> bool:
        """Whether record i is good for the loader (before label normalisation)."""
        if i in self.bad:
            return False
        text, label = self.rows[i]
        if self.kind in ("csv", "tsv"):
            return text != "" and label != ""  # an empty CSV cell is a missing value
        return True

    def label_ok(self, i: int) -> bool:
        return self.rows[i][1].strip() != ""


def _jsonl(spec: Spec) -> tuple[str, list[int]]:
    lines, numbers = [], []
    for i, (text, label) in enumerate(spec.rows):
        if spec.blank_lines and i % 3 == 1:
            lines.append("")
        row = json.dumps({"text": text, "label": label}, ensure_ascii=False)
        lines.append(BAD_JSONL[spec.bad[i]] if i in spec.bad else row)
        numbers.append(len(lines))
    return "\n".join(lines) + "\n", numbers


def _csv(spec: Spec) -> tuple[str, list[int]]:
    delimiter = "\t" if spec.kind == "tsv" else ","
    if spec.wrong_delimiter:
        delimiter = ";" if delimiter == "," else ","
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(["text", "label", "text"] if spec.duplicate_header else ["text", "label"])
    numbers = []
    for i, (text, label) in enumerate(spec.rows):
        extra = ["x"] if spec.duplicate_header else []
        if spec.bad.get(i) == "ragged_short":
            writer.writerow([text or "t"])
        elif spec.bad.get(i) == "ragged_long":
            writer.writerow([text or "t", label or "l", *extra, "extra"])
        else:
            writer.writerow([text, label, *extra])
        numbers.append(i + 2)
    return out.getvalue(), numbers


def _json(spec: Spec) -> tuple[str, list[int]]:
    rows = [{"text": t, "label": label} for t, label in spec.rows]
    return json.dumps(rows, ensure_ascii=False), list(range(1, len(rows) + 1))  # rows, not lines, name a JSON record


def write(spec: Spec, directory: Path) -> tuple[Path, list[int]]:
    """Write the file; return its path and the line of each record."""
    text, numbers = {"jsonl": _jsonl, "csv": _csv, "tsv": _csv, "json": _json}[spec.kind](spec)
    data = text.encode(spec.encoding, errors="strict")
    path = directory / spec.name
    opener = {"gz": gzip.open, "bz2": bz2.open, None: open}[spec.compression]
    with opener(path, "wb") as fh:
        fh.write(data)
    return path, numbers


@st.composite
def specs(draw, kinds=("jsonl", "csv", "tsv", "json")) -> Spec:
    kind = draw(st.sampled_from(kinds))
    rows = draw(st.lists(st.tuples(TEXT, st.sampled_from(LABELS)), min_size=1, max_size=12))
    bad_kinds = list(BAD_JSONL) if kind == "jsonl" else ["ragged_short", "ragged_long"] if kind != "json" else []
    bad = {}
    if bad_kinds:
        # At least one record stays good: a file of only bad records has no label column to detect the format by.
        indices = draw(st.sets(st.integers(0, len(rows) - 1), max_size=min(2, len(rows) - 1)))
        bad = {i: draw(st.sampled_from(bad_kinds)) for i in indices}
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    if encoding == "cp1252":  # only rows Windows-1252 can hold
        rows = [(t.encode("cp1252", "ignore").decode("cp1252"), label) for t, label in rows]
    csv_like = kind in ("csv", "tsv")
    return Spec(
        kind=kind,
        rows=rows,
        bad=bad,
        encoding=encoding,
        compression=draw(st.sampled_from([None, None, "gz", "bz2"])),
        wrong_delimiter=csv_like and draw(st.integers(0, 4)) == 0,
        duplicate_header=csv_like and draw(st.integers(0, 5)) == 0,
        blank_lines=kind == "jsonl" and draw(st.booleans()),
    )


def _first_bad_line(spec: Spec, numbers: list[int]) -> int | None:
    """The line a `raise` load must name: the first bad record, else the first empty label."""
    loader_bad = [numbers[i] for i in range(len(spec.rows)) if not spec.record_ok(i)]
    if loader_bad:
        return loader_bad[0]
    empty = [numbers[i] for i in range(len(spec.rows)) if not spec.label_ok(i)]
    return empty[0] if empty else None


def _file_level_problem(spec: Spec) -> bool:
    """Problems of the whole file: every outcome but a `DataError` naming the file is wrong."""
    non_ascii = any(any(ord(c) > 127 for c in t) for t, _ in spec.rows)
    return (
        spec.encoding == "utf-16"
        or (spec.encoding == "cp1252" and non_ascii)
        or spec.wrong_delimiter
        or spec.duplicate_header
    )


def _load(path: Path, on_error: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return Dataset.from_files(train=path, on_error=on_error), None, caught
        except DataError as exc:
            return None, exc, caught


def _check_spec(spec: Spec, directory: Path) -> None:
    path, numbers = write(spec, directory)
    for on_error in ("raise", "skip"):
        dataset, error, caught = _load(path, on_error)
        event(f"{on_error}: {'DataError' if error is not None else 'loaded'}")  # --hypothesis-show-statistics
        if error is not None:
            assert path.name in str(error), f"the error does not name the file: {error}"
            _check_expected_error(spec, numbers, on_error, str(error))
            continue
        assert not _file_level_problem(spec) or _only_skipped_lines(spec), f"loaded a bad file: {spec}"
        _check_counts(spec, dataset, on_error, caught)
        _check_sanitizer(dataset)


def _only_skipped_lines(spec: Spec) -> bool:
    # Windows-1252 bytes in some lines only: with on_error=skip those lines are counted as undecodable.
    return spec.encoding == "cp1252" and not spec.wrong_delimiter and not spec.duplicate_header


def _check_expected_error(spec: Spec, numbers: list[int], on_error: str, message: str) -> None:
    if _file_level_problem(spec):
        return  # the file as a whole (encoding, delimiter, header): naming the file is what counts
    good = [i for i in range(len(spec.rows)) if spec.record_ok(i) and spec.label_ok(i)]
    if on_error == "skip":
        assert not good, f"rows were good, yet: {message}"
        return
    line = _first_bad_line(spec, numbers)
    assert line is not None, f"a good file was refused: {message}"
    if spec.kind != "json":
        assert f"{spec.name}:{line}" in message, f"line {line} not named: {message}"


def _check_counts(spec: Spec, dataset, on_error: str, caught) -> None:
    n_records = len(spec.rows)
    kept = len(dataset["train"])
    skipped = sum(dataset.skipped["train"].values())
    assert kept + skipped == n_records, (kept, skipped, n_records, dataset.load_report)
    if on_error == "raise":
        assert skipped == 0 and kept == n_records
    labels = dataset["train"]["label"]
    assert all(label == label.strip() and label for label in labels)
    good = [i for i in range(n_records) if spec.record_ok(i) and spec.label_ok(i)]
    if spec.encoding != "cp1252":  # undecodable lines are skipped whole
        assert kept == len(good)
        # Every label the loader read is stripped, also those of rows then skipped for being empty.
        read = [i for i in range(n_records) if spec.record_ok(i)]
        stripped = sum(1 for i in read if spec.rows[i][1] != spec.rows[i][1].strip())
        assert dataset.load_report["train"]["changed"].get("label_spaces_stripped", 0) == stripped
        distinct = {spec.rows[i][1].strip() for i in good}
        if len({label.lower() for label in distinct}) < len(distinct):
            assert any("differ only by case" in str(w.message) for w in caught)


def _check_sanitizer(dataset) -> None:
    sanitizer = DatasetSanitizer()
    clean = sanitizer.sanitize(dataset)
    report = sanitizer.report.to_dict()["splits"]["train"]
    rows = report["rows_in"]
    for step in report["steps"]:
        assert step["rows_in"] == rows
        assert step["rows_in"] - step["rows_out"] == sum(step["reasons"].values()), step
        rows = step["rows_out"]
    assert rows == len(clean["train"]) == report["rows_out"]


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs())
@example(spec=Spec("jsonl", [("a", "positive"), ("b", "Positive"), ("c", "positive "), ("d", "")]))
@example(spec=Spec("csv", [("a", "pos"), ("b", "neg")], duplicate_header=True))
@example(spec=Spec("jsonl", [("a", "pos"), ("b", "neg")], bad={1: "duplicate_field"}, compression="gz"))
@example(spec=Spec("csv", [("café", "pos"), ("b", "neg")], encoding="cp1252"))
@example(spec=Spec("tsv", [("a", "pos"), ("b", "neg")], wrong_delimiter=True, compression="bz2"))
def test_generated_files_load_or_fail_with_one_clear_error(spec, tmp_path_factory):
    _check_spec(spec, tmp_path_factory.mktemp("gen"))


# -- the CLI: a handful of examples, one training step each ---------------------------------------


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}  # fmt: skip


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("MODELOPS_DEBUG", None)
    command = [sys.executable, "-m", "modelops", "+recipe=lora_small", "tracking=none", "trainer.max_steps=1",
               "trainer.batch_size=2", "stages=[sanitize,train]", *args]  # fmt: skip
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    """A finished run in <cwd>/outputs/earlier, whose files no later run may change."""
    cwd = tmp_path_factory.mktemp("cli")
    data = cwd / "earlier.jsonl"
    texts = ["the film was a delight", "service was slow and cold", "a lovely quiet hotel room",
             "the battery died in an hour", "great value for the money", "never buying this brand again"]  # fmt: skip
    data.write_text("".join(json.dumps({"text": t, "label": "ab"[i % 2]}) + "\n" for i, t in enumerate(texts)))
    proc = _cli([f"dataset.train={data}", "dataset=files", "hydra.run.dir=outputs/earlier"], cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return cwd, _digest(cwd / "outputs" / "earlier")


@pytest.mark.slow
@settings(max_examples=6, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(spec=specs(kinds=("jsonl", "csv")), reuse=st.booleans())
def test_cli_one_step_runs_or_exits_2_and_leaves_earlier_runs_alone(spec, reuse, earlier_run):
    cwd, before = earlier_run
    directory = cwd / f"gen-{hashlib.sha256(repr((spec, reuse)).encode()).hexdigest()[:12]}"
    directory.mkdir(exist_ok=True)
    path, _ = write(spec, directory)
    run_dir = "outputs/earlier" if reuse else f"outputs/{directory.name}"
    proc = _cli(["dataset=files", f"dataset.train={path}", "dataset.on_error=skip", f"hydra.run.dir={run_dir}"], cwd)
    event(f"reused run dir: {reuse}, exit {proc.returncode}")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert _digest(cwd / "outputs" / "earlier") == before, "an earlier run's files changed"
    if reuse:
        assert proc.returncode == 2 and "outputs/earlier" in proc.stderr and "overwrite=true" in proc.stderr
        return
    if proc.returncode == 0:
        lineage = json.loads((cwd / run_dir / "data" / "lineage.json").read_text())["load_report"]["train"]
        assert lineage["rows"] + sum(lineage["skipped"].values()) == len(spec.rows)
        skipped_file = cwd / run_dir / "data" / "skipped.jsonl"
        skipped_lines = skipped_file.read_text().splitlines() if skipped_file.exists() else []
        assert len(skipped_lines) == sum(lineage["skipped"].values())
    else:
        assert proc.returncode == 2, proc.stderr[-3000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and (path.name in last or "class" in last or "split" in last), last
