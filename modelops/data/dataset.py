"""`Dataset`: named splits of rows in one format, backed by Hugging Face `datasets` (Arrow).

Data enters modelops only through this class: ``from_jsonl``, ``from_json``, ``from_csv``,
``from_parquet``, ``from_records``, ``from_hf`` read one source into one split; ``from_files``
reads one source per split (and can split one file); ``split`` carves validation/test out of
train. Every loader takes ``format`` (detected when omitted), ``columns`` (a mapping from
canonical field to source column), ``on_error`` (``raise`` or ``skip``) and, for classification,
``lowercase_labels``; see `formats` for the formats, `loaders` for how files are read and checked and
`labels` for how label strings are normalised (spaces stripped, empty labels refused).
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from modelops.data import formats, loaders
from modelops.data.fingerprint import fingerprint_dataset
from modelops.data.labels import case_variants, normalize_labels, warn_case_variants
from modelops.data.writers import write
from modelops.errors import DataError
from modelops.io import atomic_dir
from modelops.log import say


class Dataset:
    """Rows split into named parts (`train`, `validation`, `test`, ...), all of one format.

    Args:
        splits: split name -> `datasets.Dataset`.
        format: the row format (`classification`, `text`, `completion`, `instruction`, `chat`, `preference`).
        labels: for classification, the label names in id order; inferred when omitted (from the
            train split when there is one; int labels 0..k-1 are named "0".."k-1").
        load_report: split name -> `loaders.LoadReport`, as the loaders fill it.
        origins: split name -> `loaders.Origin` (each row's file and line), as the loaders give it.

    Raises:
        DataError: no splits, an unknown format, or a label in some split that is not a label
            of train (or of `labels`), naming the split, row and value.
    """

    def __init__(
        self,
        splits: Mapping[str, Any],
        format: str = "classification",
        labels: list[str] | None = None,
        load_report: Mapping[str, loaders.LoadReport] | None = None,
        origins: Mapping[str, loaders.Origin] | None = None,
    ):
        if not splits:
            raise DataError("a Dataset needs at least one split")
        formats.get_format(format)
        self._splits = dict(splits)
        self.format = format
        self.labels = [str(label) for label in labels] if labels is not None else self._infer_labels()
        self._reports = dict(load_report or {})
        self._origins = {name: o for name, o in (origins or {}).items() if o is not None}
        for name in self._splits:
            self._check_labels(name)

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_jsonl(
        cls,
        path: str | os.PathLike,
        *,
        split: str = "train",
        format: str | None = None,
        columns: Mapping[str, str] | None = None,
        on_error: str = "raise",
        labels: list[str] | None = None,
        lowercase_labels: bool = False,
    ) -> Dataset:
        """Load one JSON Lines file as one split (see the module docstring for the options)."""
        loaded = loaders.load_file(path, kind="jsonl", **_opts(format, columns, on_error))
        return cls._from_loaded({split: loaded}, labels, on_error, lowercase_labels)

    @classmethod
    def from_json(
        cls,
        path: str | os.PathLike,
        *,
        split: str = "train",
        format: str | None = None,
        columns: Mapping[str, str] | None = None,
        on_error: str = "raise",
        labels: list[str] | None = None,
        lowercase_labels: bool = False,
    ) -> Dataset:
        """Load a JSON file holding an array of rows, or ``{"data": [rows]}``, as one split."""
        loaded = loaders.load_file(path, kind="json", **_opts(format, columns, on_error))
        return cls._from_loaded({split: loaded}, labels, on_error, lowercase_labels)

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike,
        *,
        split: str = "train",
        format: str | None = None,
        columns: Mapping[str, str] | None = None,
        on_error: str = "raise",
        labels: list[str] | None = None,
        lowercase_labels: bool = False,
        delimiter: str | None = None,
        header: bool = True,
    ) -> Dataset:
        """Load a CSV file (TSV for a .tsv name, or any `delimiter`) as one split.

        Text fields stay strings; other columns whose every value is an integer become ints.
        A file without a header row takes ``header=False`` and columns by position:
        ``Dataset.from_csv("ag_news.tsv", header=False, columns={"text": 0, "label": 1})``.
        """
        options = _opts(format, columns, on_error)
        loaded = loaders.load_file(path, kind="csv", delimiter=delimiter, header=header, **options)
        return cls._from_loaded({split: loaded}, labels, on_error, lowercase_labels)

    @classmethod
    def from_parquet(
        cls,
        path: str | os.PathLike,
        *,
        split: str = "train",
        format: str | None = None,
        columns: Mapping[str, str] | None = None,
        on_error: str = "raise",
        labels: list[str] | None = None,
        lowercase_labels: bool = False,
    ) -> Dataset:
        """Load one Parquet file as one split."""
        options = _opts(format, columns, on_error)
        loaded = loaders.load_file(path, kind="parquet", **options)
        return cls._from_loaded({split: loaded}, labels, on_error, lowercase_labels)

    @classmethod
    def from_records(
        cls,
        records: Iterable[Mapping[str, Any]],
        *,
        split: str = "train",
        format: str | None = None,
        columns: Mapping[str, str] | None = None,
        on_error: str = "raise",
        labels: list[str] | None = None,
        lowercase_labels: bool = False,
    ) -> Dataset:
        """Build a one-split Dataset from dicts; errors name the row (1-based)."""
        loaded = loaders.load_records(records, source=f"{split} records", **_opts(format, columns, on_error))
        return cls._from_loaded({split: loaded}, labels, on_error, lowercase_labels)

    @classmethod
    def from_hf(
        cls,
        path: str | os.PathLike,
        *,
        format: str | None = None,
        columns: Mapping[str, str] | None = None,
        on_error: str = "raise",
        labels: list[str] | None = None,
        lowercase_labels: bool = False,
        splits: list[str] | None = None,
        config_name: str | None = None,
        revision: str | None = None,
    ) -> Dataset:
        """Load a directory written by `datasets` ``save_to_disk`` (a Dataset becomes `train`).

        Args:
            path: the directory; a path that does not exist locally is tried as a Hub name.
            splits: which splits to keep (default: all).
            config_name, revision: passed to ``datasets.load_dataset`` for a Hub name.
        """
        tables = loaders.load_hf(path, config_name=config_name, revision=revision)
        missing = [name for name in splits or [] if name not in tables]
        if missing:
            raise DataError(f"{path}: no split {missing}; it has {list(tables)}")
        loaded = {}
        fmt = format
        for name in splits or list(tables):
            options = _opts(fmt, columns, on_error)
            loaded[name] = loaders.load_table(tables[name], source=f"{path} [{name}]", **options)
            fmt = loaded[name].format
        return cls._from_loaded(loaded, labels, on_error, lowercase_labels)

    @classmethod
    def from_files(
        cls,
        format: str | None = None,
        *,
        columns: Mapping[str, str] | None = None,
        on_error: str = "raise",
        split: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
        lowercase_labels: bool = False,
        delimiter: str | None = None,
        header: bool = True,
        **split_paths: str | os.PathLike | None,
    ) -> Dataset:
        """One file per split: ``Dataset.from_files(train="a.jsonl", validation="b.csv", test=...)``.

        The file type follows each extension (a directory is a saved HF dataset). The format is
        detected on the first split (train when given) and the other splits must fit it.

        Args:
            format: the row format; detected when None.
            columns: mapping from canonical field to source column, applied to every file.
            on_error: ``raise`` or ``skip`` (bad rows, and eval rows whose label is not in train).
            split: carve splits out of train after loading, e.g. ``{"validation": 0.1, "test": 0.1,
                "seed": 0, "stratify": True}`` (see `split`).
            labels: the label names in id order (default: those of train).
            lowercase_labels: lower-case every string label (``Positive`` and ``positive`` become one
                class). Spaces around labels are always stripped; labels that differ only by case are
                kept apart (with a warning naming a line of each) unless this is set.
            delimiter: the CSV delimiter, for every CSV file.
            header: whether CSV/TSV files start with a header row; False names their columns by
                position, for `columns` such as ``{"text": 0, "label": 1}``.
            **split_paths: split name -> path; None or empty values are left out.
        """
        paths = {name: path for name, path in split_paths.items() if path}
        if not paths:
            raise DataError("from_files: name at least one split, e.g. train=path/to/train.jsonl")
        order = sorted(paths, key=lambda name: name != "train")
        loaded: dict[str, loaders.Loaded] = {}
        fmt = format
        for name in order:
            loaded[name] = _load_path(paths[name], fmt, columns, on_error, delimiter, header)
            fmt = loaded[name].format
        dataset = cls._from_loaded({name: loaded[name] for name in paths}, labels, on_error, lowercase_labels)
        return dataset.split(**split) if split else dataset

    @classmethod
    def _from_loaded(
        cls,
        loaded: Mapping[str, loaders.Loaded],
        labels: list[str] | None,
        on_error: str = "raise",
        lowercase_labels: bool = False,
    ) -> Dataset:
        fmt = next(iter(loaded.values())).format
        splits = {name: loaders.to_hf(item.table) for name, item in loaded.items()}
        reports = {name: item.report for name, item in loaded.items()}
        origins = {name: item.origin for name, item in loaded.items()}
        _print_recognised_columns(reports.values())
        if fmt == "classification":
            _normalize_labels(splits, reports, origins, lowercase_labels, on_error)
        if labels is None:
            labels = _infer_labels(splits, fmt)
        if on_error == "skip" and labels is not None:
            for name, part in splits.items():
                splits[name], kept = _drop_unknown_labels(part, labels, reports[name])
                if kept is not None and origins[name] is not None:
                    origins[name] = origins[name].take(kept)
        return cls(splits, format=fmt, labels=labels, load_report=reports, origins=origins)

    @classmethod
    def load_from_disk(cls, path: str | os.PathLike) -> Dataset:
        """Load a Dataset written by `save_to_disk` (Arrow files plus `dataset.json`)."""
        import datasets

        path = Path(path)
        meta_path = path / "dataset.json"
        if not meta_path.is_file():
            raise DataError(f"{path}: no dataset.json; not a directory written by Dataset.save_to_disk")
        meta = json.loads(meta_path.read_text())
        splits = {name: datasets.load_from_disk(str(path / name)) for name in meta["splits"]}
        reports = {name: loaders.LoadReport(**report) for name, report in (meta.get("load_report") or {}).items()}
        return cls(splits, format=meta["format"], labels=meta["labels"], load_report=reports)

    # -- access -------------------------------------------------------------------------------

    @property
    def split_names(self) -> list[str]:
        return list(self._splits)

    def __getitem__(self, key: str | int | slice):
        """``ds["train"]``: a split (a `datasets.Dataset`); ``ds[0]``, ``ds[-1]``, ``ds[2:5]``: rows of one split.

        Raises:
            DataError: no such split, or a row index on a Dataset of several splits.
        """
        if isinstance(key, str):
            try:
                return self._splits[key]
            except KeyError as exc:
                raise DataError(f"no split {key!r}; this dataset has {self.split_names}") from exc
        rows = self._only_split(f"ds[{key!r}]")
        if isinstance(key, slice):
            return rows.select(range(len(rows))[key]).to_list()  # rows as dicts, like ds[0]
        if isinstance(key, bool) or not isinstance(key, numbers.Integral):
            raise DataError(f"ds[{key!r}]: index a Dataset by split name (ds['train']) or by row number (ds[0])")
        if not -len(rows) <= key < len(rows):
            raise IndexError(f"row {key} is out of range: the {self.split_names[0]!r} split has {len(rows)} rows")
        return rows[int(key) % len(rows)]

    def __iter__(self):
        """The rows (dicts) of a one-split Dataset; with several splits, pick one: ``for row in ds["train"]``."""
        return iter(self._only_split("iterating"))

    def to_list(self) -> list[dict[str, Any]]:
        """The rows of a one-split Dataset as a list of dicts."""
        return self._only_split("to_list()").to_list()

    def _only_split(self, what: str):
        if len(self._splits) > 1:
            names = self.split_names
            raise DataError(
                f"{what}: this Dataset has {len(names)} splits {names}; pick one first, e.g. ds[{names[0]!r}]"
            )
        return next(iter(self._splits.values()))

    def __contains__(self, split: str) -> bool:
        return split in self._splits

    def __len__(self) -> int:
        return sum(len(part) for part in self._splits.values())

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={len(part)}" for name, part in self._splits.items())
        return f"Dataset(format={self.format!r}, {parts})"

    def replace(self, *, kept_rows: Mapping[str, Any] | None = None, **splits: Any) -> Dataset:
        """A new Dataset with some splits replaced; format, labels and load report carried over.

        Args:
            kept_rows: for a replaced split whose rows are some of the old split's rows (cleaned,
                filtered), the old index of each new row, so `locate` still names their source lines.
            **splits: split name -> its new `datasets.Dataset`.
        """
        origins = {name: o for name, o in self._origins.items() if name not in splits}
        for name, rows in (kept_rows or {}).items():
            if name in self._origins:
                origins[name] = self._origins[name].take(rows)
        merged = {**self._splits, **splits}
        return Dataset(merged, format=self.format, labels=self.labels, load_report=self._reports, origins=origins)

    def locate(self, split: str, rows: Iterable[int]) -> list[str]:
        """Where rows of `split` came from: ``file:line`` (``source: row N`` for sources without lines).

        Rows keep their source line through splitting and sanitizing; a split built in memory
        is named by the row's 1-based position in it.
        """
        rows = list(rows)
        origin = self._origins.get(split)
        if origin is None:
            return [f"split {split!r}, row {row + 1}" for row in rows]
        return origin.locate(rows)

    def eval_split(self) -> str:
        """The split to evaluate on: `test`, else `validation`, else the only split."""
        for name in ("test", "validation"):
            if name in self._splits:
                return name
        if len(self._splits) == 1:
            return self.split_names[0]
        raise DataError(f"no test or validation split to evaluate on; splits are {self.split_names}")

    @property
    def load_report(self) -> dict[str, dict[str, Any]]:
        """Per split: source, rows kept, rows skipped by reason and a few example messages."""
        return {name: report.as_dict() for name, report in self._reports.items()}

    @property
    def skipped(self) -> dict[str, dict[str, int]]:
        """Per split: reason -> rows skipped while loading (empty with ``on_error="raise"``)."""
        return {name: dict(report.skipped) for name, report in self._reports.items()}

    def skipped_rows(self) -> Iterator[dict[str, Any]]:
        """Every row skipped while loading: ``{"split", "file", "line", "row", "reason", "message", "raw"}``.

        Splits carved out of one file share its report; its rows are listed once, under that file's split.
        """
        seen: set[int] = set()
        for name, report in self._reports.items():
            if id(report) not in seen:
                seen.add(id(report))
                for row in report.skipped_rows:
                    yield {"split": name, **row}

    def skip_summary(self) -> list[str]:
        """One line per source that lost rows while loading: where, how many, and the count of each reason."""
        lines, seen = [], set()
        for name, report in self._reports.items():
            if report.total_skipped and id(report) not in seen:
                seen.add(id(report))
                reasons = ", ".join(f"{reason}={n}" for reason, n in report.skipped.items())
                lines.append(f"skipped {report.total_skipped} row(s) of {name} ({report.source}): {reasons}")
        return lines

    # -- splitting ----------------------------------------------------------------------------

    def split(
        self,
        validation: float | int | None = None,
        test: float | int | None = None,
        *,
        seed: int = 0,
        stratify: bool = True,
        source: str | None = None,
        **sizes: float | int,
    ) -> Dataset:
        """Carve new splits out of `source` (default `train`, or the only split), reproducibly for `seed`.

        Args:
            validation, test, **sizes: split name -> fraction of the source rows (float) or row count (int).
            seed: the shuffle seed; the same seed gives the same rows in each split.
            stratify: for classification, keep each split's label proportions those of the source.
            source: the split to carve from; it keeps the rows left over.

        Raises:
            DataError: a split that already exists, a split that would get no rows, or sizes that
                leave the source empty; naming the sizes asked and the rows available.
        """
        from modelops.data.split import label_groups, split_indices

        wanted = {name: size for name, size in {"validation": validation, "test": test, **sizes}.items() if size}
        source = source or ("train" if "train" in self._splits else self.split_names[0])
        part = self[source]
        clash = [name for name in wanted if name in self._splits and name != source]
        if clash:
            raise DataError(f"split: {clash} already exist; splits are {self.split_names}")
        groups = None
        if stratify and self.format == "classification" and "label" in part.column_names:
            groups = label_groups(part)
        report = self._reports.get(source)
        where = f"{source!r} (from {report.source})" if report else repr(source)
        indices = split_indices(len(part), wanted, seed=seed, groups=groups, source=source, where=where)
        if groups is not None:
            _warn_unstratified(part, groups, indices, where)
        table = loaders.hf_table(part)
        # one Arrow take per split: contiguous tables that later reads slice without an index mapping
        parts = {name: loaders.to_hf(table.take(index)) for name, index in indices.items()}
        reports = {**self._reports, **{name: report for name in wanted if report}}
        origins = dict(self._origins)
        if source in self._origins:
            origins.update({name: self._origins[source].take(index) for name, index in indices.items()})
        return Dataset(
            {**self._splits, **parts}, format=self.format, labels=self.labels, load_report=reports, origins=origins
        )

    # -- labels -------------------------------------------------------------------------------

    def _infer_labels(self) -> list[str] | None:
        return _infer_labels(self._splits, self.format)

    def _check_labels(self, name: str) -> None:
        part = self._splits[name]
        if self.labels is None or "label" not in part.column_names or not len(part):
            return
        mask = _unknown_label_mask(part, self.labels)
        if mask.any():
            row = int(mask.argmax())
            value = part[row]["label"]
            report = self._reports.get(name)
            where = f"{report.source} (split {name!r})" if report else f"split {name!r}"
            raise DataError(
                f"{where}, row {row + 1}, field 'label': {value!r} is not one of the train labels {self.labels}"
            )

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.labels or [])}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels or []))

    # -- lineage ------------------------------------------------------------------------------

    def fingerprint(self, split: str) -> str:
        """A SHA-256 of the split's rows, stable across runs, machines and file types.

        It hashes a canonical encoding of the Arrow columns in fixed slices (algorithm
        ``mo-fp-2``, described in `modelops.data.fingerprint`): the same values give the same
        hash whatever file they came from; changing any character of any row changes it.
        """
        return fingerprint_dataset(self[split])

    def lineage(self) -> dict[str, dict[str, Any]]:
        """Per split: row count and content fingerprint."""
        return {name: {"rows": len(part), "fingerprint": self.fingerprint(name)} for name, part in self._splits.items()}

    # -- saving -------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, split: str | None = None) -> Path:
        """Write one split, atomically: `split`, or the only one.

        A Dataset of several splits needs `split` (nothing is left out silently): write each with
        ``for name in ds.split_names: ds.save(f"clean_{name}.jsonl", split=name)``, or all of them
        at once with `save_to_disk`.

        The extension picks the file type: ``.jsonl`` (or ``.ndjson``); ``.parquet``; ``.csv`` (``.tsv``
        tab-separated; no nested columns such as chat messages); ``.json`` (an array). A compression
        suffix after it compresses the file: ``.gz``, ``.bz2``, ``.zst``, ``.lz4``, ``.br``
        (``clean.jsonl.gz``); every loader, and the CLI, reads such files back. Any other name is refused.
        Reading the file back gives the same rows and values (CSV: a string label that looks
        like an integer comes back as an int, since CSV keeps no types).

        Raises:
            DataError: several splits and no `split`, no such split, or an extension that names no file type.
        """
        if split is None and len(self._splits) > 1:
            names = self.split_names
            raise DataError(
                f"save({str(path)!r}): this Dataset has {len(names)} splits {names}; name the one to write, "
                f"e.g. save(path, split={names[0]!r}), or write them all with save_to_disk(directory)"
            )
        return write(self[split or self.split_names[0]], path)

    def save_to_disk(self, path: str | os.PathLike) -> Path:
        """Write every split as Arrow plus a `dataset.json` with format, labels and load report, atomically."""
        path = Path(path)
        meta = {
            "format": self.format,
            "labels": self.labels,
            "label2id": self.label2id,
            "splits": self.split_names,
            "load_report": self.load_report,
        }
        with atomic_dir(path) as tmp, _no_progress_bars():
            for name, part in self._splits.items():
                part.save_to_disk(str(tmp / name))
            (tmp / "dataset.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        return path


# -- helpers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """`datasets`' progress bars off for one save (a "Saving the dataset" bar per split is noise), then as before."""
    import datasets

    was_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_off:
            datasets.enable_progress_bars()


def _opts(format: str | None, columns: Mapping[str, str] | None, on_error: str) -> dict[str, Any]:
    return {"format": format, "columns": columns, "on_error": on_error}


def _load_path(
    path: Any, fmt: str | None, columns: Any, on_error: str, delimiter: str | None, header: bool = True
) -> loaders.Loaded:
    """One split from a file, or from a directory saved by `datasets` (its only or `train` split)."""
    if Path(path).is_dir():
        tables = loaders.load_hf(path)
        name = "train" if "train" in tables else next(iter(tables))
        if len(tables) > 1 and "train" not in tables:
            raise DataError(f"{path}: holds splits {list(tables)}; use Dataset.from_hf to load them all")
        return loaders.load_table(tables[name], source=str(path), **_opts(fmt, columns, on_error))
    return loaders.load_file(path, delimiter=delimiter, header=header, **_opts(fmt, columns, on_error))


def _normalize_labels(splits: dict, reports: dict, origins: dict, lowercase: bool, on_error: str) -> None:
    """Strip (and with `lowercase` lower-case) string labels in place; say what changed, warn of case variants."""
    variants = []
    for name in splits:
        splits[name], origins[name] = normalize_labels(
            splits[name], reports[name], origins[name], lowercase, on_error, name
        )
        variants += case_variants(splits[name], origins[name], name)
        changed = ", ".join(f"{what}={n}" for what, n in reports[name].changed.items())
        if changed:
            say(f"labels of {name} ({reports[name].source}): {changed}")
    warn_case_variants(variants)


def _warn_unstratified(part: Any, groups: Any, indices: Mapping[str, Any], where: str) -> None:
    """Name the classes too small to reach every split: stratifying left some split without any of their rows."""
    import warnings

    import numpy as np

    counts = np.bincount(groups)
    short = []
    for k in np.flatnonzero(counts).tolist():
        missing = [name for name, index in indices.items() if not np.any(groups[index] == k)]
        if missing:
            label = part[int(np.flatnonzero(groups == k)[0])]["label"]
            short.append(f"{label!r} ({counts[k]} row(s); none in {missing})")
    if short:
        warnings.warn(
            f"split: could not stratify {where}: class(es) with too few rows for every split: {'; '.join(short)}. "
            "Give more rows of these classes, or fewer/larger splits",
            UserWarning,
            stacklevel=3,
        )


def _print_recognised_columns(reports: Iterable[loaders.LoadReport]) -> None:
    """Say once which columns were taken for which field when they were recognised by name, not given."""
    shown: list[dict[str, str]] = []
    for report in reports:
        if report.columns and report.columns not in shown:
            shown.append(report.columns)
            pairs = ", ".join(f"{src} → {canonical}" for src, canonical in report.columns.items())
            say(f"columns: {pairs} (recognised by name; set columns= / dataset.columns to choose others)")


def _infer_labels(splits: Mapping[str, Any], fmt: str) -> list[str] | None:
    """Label names in id order: those of train (else of every split); ints 0..max as "0".."max"."""
    if fmt != "classification":
        return None
    sources = [splits["train"]] if "train" in splits else list(splits.values())
    values: set = set()
    for part in sources:
        if "label" in part.column_names:
            values.update(v for v in part.unique("label") if v is not None)
    if not values:
        return None
    if all(isinstance(v, int) for v in values):
        if min(values) < 0:
            raise DataError(f"field 'label': integer labels must be ids 0..k-1, found {min(values)}; use string labels")
        return [str(v) for v in range(max(values) + 1)]
    return sorted(str(v) for v in values)


def _unknown_label_mask(part: Any, labels: list[str]) -> Any:
    """A numpy bool per row: is its label outside `labels` (names, or ids 0..len-1 for int labels)?"""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = part.select_columns(["label"]).with_format("arrow")[:]["label"]
    if pa.types.is_integer(column.type):
        known = pc.and_(pc.greater_equal(column, 0), pc.less(column, len(labels)))
    else:
        known = pc.is_in(column.cast(pa.string()), value_set=pa.array(labels, pa.string()))
    return pc.invert(pc.fill_null(known, False)).to_numpy(zero_copy_only=False)


def _drop_unknown_labels(part: Any, labels: list[str], report: loaders.LoadReport) -> tuple[Any, Any]:
    """`part` without rows whose label is unknown, each counted in `report` as `unknown_label`.

    Returns the new part and the indices of the rows it kept (None when it kept them all).
    """
    import numpy as np

    if "label" not in part.column_names:
        return part, None
    mask = _unknown_label_mask(part, labels)
    for row in np.flatnonzero(mask).tolist():
        values = part[row]
        message = f"field 'label': {values['label']!r} not in the train labels {labels}"
        raw = json.dumps(values, ensure_ascii=False, default=str)
        report.skip("unknown_label", loaders.Place(report.source, row=row + 1), message, raw)
    if not mask.any():
        return part, None
    kept = np.flatnonzero(~mask)
    part = part.select(kept)
    report.rows = len(part)
    return part, kept
