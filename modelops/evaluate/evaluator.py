"""`Evaluator`: score a base or fine-tuned model, classifier or causal LM, on one split of a dataset.

What is computed depends on the metrics asked for (see `modelops.tasks.metrics`) and the data format:

- classification metrics (accuracy, f1, precision, recall, confusion_matrix) on ``classification`` data: a
  sequence classifier's argmax, or, for a causal LM, the label whose verbalisation is most likely after the
  prompt (see `modelops.evaluate.scoring`);
- LM metrics (loss, perplexity, bits_per_byte) with a causal LM on any format, on the text of each row:
  ``text`` for text and classification rows, the full example rendered by `modelops.models.templates.segments`
  (prompt and answer, EOS included) for completion, instruction and chat rows (see
  `modelops.evaluate.perplexity` for the sliding window);
- generative metrics (exact_match) with a causal LM on completion, instruction and chat rows: greedy
  generation from the prompt given by `modelops.models.templates.prompt_and_reference`, compared with its
  reference (see `modelops.evaluate.generation`);
- preference metrics (preference_accuracy, reward_accuracy, reward_margin) with a causal LM on preference
  pairs, the rewards against a reference model (see `modelops.evaluate.preference`).

The same call serves periodic validation inside a training loop: pass the live ``(model, tokenizer)``; it is
scored in eval mode under ``torch.inference_mode`` and its training mode is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelops.data.answers import NORMALIZATIONS, build_filters, check_match
from modelops.errors import EvaluationError
from modelops.evaluate.perplexity import with_row_scores
from modelops.evaluate.results import EvalResults
from modelops.tasks.task import BY_FORMAT, GENERATIVE_FORMATS, Task, model_task, task_for

#: Metrics used when none are given, by data format: each format's task's `default_metrics`.
DEFAULT_METRICS = {fmt: task_for(None, fmt).default_metrics(fmt) for fmt in BY_FORMAT}


class Evaluator:
    """Compute metrics for a model on a dataset split. `conf/evaluator/default.yaml` spells out these defaults.

    Args:
        metrics: metric names (see `modelops.tasks.metrics.known_metrics()`), dotted names or
            ``{_target_: module.function, ...}`` nodes of your own; None picks by data format
            (`DEFAULT_METRICS`).
        batch_size: examples per forward pass; results do not depend on it.
        average: F1/precision/recall averaging: ``macro`` (default), ``micro``, ``weighted``, ``binary``.
        split: the split to score; default ``test``, else ``validation``, else the only split.
        seed: seeds the fresh classification head put on a bare encoder, so its scores repeat.
        max_length: tokens per input. Classifiers truncate to it (default: the model's context, at most 512);
            LM metrics use it as the sliding-window size (default: the model's context); generation keeps the
            last ``max_length - max_new_tokens`` prompt tokens.
        stride: how far the LM sliding window advances; default ``max_length // 2``.
        max_new_tokens: the most tokens greedy generation adds per prompt.
        normalize: what exact match ignores, any of ``case``, ``punctuation``, ``whitespace`` (default
            ``[whitespace]``: strip, and runs of whitespace count as one space).
        prompt_template: how a causal LM is prompted for a classification row; ``{text}`` is the row's text.
        choice_template: the verbalisation of each label scored after the prompt; ``{label}`` is its name.
        reference: the reference model of the reward metrics on preference data (any model reference); None: the
            model's own base (see `modelops.evaluate.preference`).
        device: where to run a model the Evaluator loads (default ``cuda`` when available, else ``cpu``); a
            ``(model, tokenizer)`` pair stays where it is.
        filters: answer extraction applied to generation and reference before exact match (see
            `modelops.data.answers`): a list of filters, or ``auto`` (the GSM8K ``####`` filter when references
            carry that marker, else none).
        match: ``exact`` (string equality after filters and `normalize`) or ``math`` (math-verify).
        score_on: ``answer`` scores LM metrics of completion/instruction/chat rows on the tokens training puts the
            loss on; ``all`` on the whole rendered example.
        num_fewshot: examples from the train split put before each generative prompt (seeded by `seed`).
        stop: strings that end a generation (beside EOS).
        resamples: bootstrap resamples of the base -> fine-tuned delta intervals (see `modelops.stats`).
    """

    def __init__(
        self,
        metrics: list | None = None,
        batch_size: int = 64,
        average: str = "macro",
        split: str | None = None,
        seed: int = 0,
        max_length: int | None = None,
        stride: int | None = None,
        max_new_tokens: int = 64,
        normalize: Sequence[str] = ("whitespace",),
        prompt_template: str = "{text}\nLabel:",
        choice_template: str = " {label}",
        reference: Any = None,
        device: str | None = None,
        filters: Any = "auto",
        match: str = "exact",
        score_on: str = "answer",
        num_fewshot: int = 0,
        stop: Sequence[str] = (),
        resamples: int = 10_000,
    ):
        if batch_size < 1:
            raise EvaluationError(f"evaluator.batch_size: must be >= 1, got {batch_size}")
        if average not in ("macro", "micro", "weighted", "binary"):
            raise EvaluationError(f"evaluator.average: {average!r} is not one of macro, micro, weighted, binary")
        if metrics is not None:
            from modelops.tasks.metrics import resolve_metrics

            try:
                # An unknown metric fails now, not after training; resolved here, inside the config's trust.
                metrics = resolve_metrics(metrics)
            except EvaluationError as exc:
                raise EvaluationError(f"evaluator.metrics: {exc}") from exc
        if filters != "auto":
            build_filters(filters, "evaluator.filters")  # a bad regex fails now, naming its key
        check_match(match, "evaluator.match")
        bad = [option for option in normalize if option not in NORMALIZATIONS]
        if bad:
            raise EvaluationError(f"evaluator.normalize: unknown option(s) {bad}; options are {list(NORMALIZATIONS)}")
        if score_on not in ("answer", "all"):
            raise EvaluationError(f"evaluator.score_on: {score_on!r} is not one of answer, all")
        if num_fewshot < 0 or resamples < 1:
            raise EvaluationError(f"evaluator.num_fewshot/resamples: need >= 0 / >= 1, got {num_fewshot}/{resamples}")
        self.filters = filters
        self.match = match
        self.score_on = score_on
        self.num_fewshot = num_fewshot
        self.stop = list(stop)
        self.resamples = resamples
        self.metrics = list(metrics) if metrics is not None else None
        self.batch_size = batch_size
        self.average = average
        self.split = split
        self.seed = seed
        self.max_length = max_length
        self.stride = stride
        self.max_new_tokens = max_new_tokens
        self.normalize = list(normalize)
        self.prompt_template = prompt_template
        self.choice_template = choice_template
        self.reference = reference
        self.device = device

    def evaluate(self, model: Any, dataset, metrics: list | None = None, split: str | None = None) -> EvalResults:
        """Score `model` on one split of `dataset`.

        Args:
            model: a model directory written by training (``job.fine_tuned_model``), a run directory, a saved
                transformers model or PEFT adapter directory, a ``conf/model`` option name, a built-in alias
                (``minilm``, ``tiny-llama``), a hub id, or an already loaded ``(model, tokenizer)``
                (see `modelops.evaluate.models`).
            dataset: a `modelops.Dataset`.
            metrics: overrides the metrics given at construction.
            split: overrides the split given at construction.

        Raises:
            EvaluationError: an unknown metric (the message lists the known ones), a metric the data format or
                the model cannot give (perplexity of a classifier), a label the model does not know, an empty split.
            ModelError: a model reference that cannot be loaded, naming what was tried.
        """
        from modelops.evaluate.batching import inference
        from modelops.evaluate.models import load_for_evaluation
        from modelops.tasks.metrics import resolve_metrics

        task = task_for(None, dataset.format)
        chosen = resolve_metrics(metrics or self.metrics or task.default_metrics(dataset.format))
        split = split or self.split or dataset.eval_split()
        table = dataset[split]
        if len(table) == 0:
            raise EvaluationError(f"split {split!r} is empty: nothing to evaluate")
        _check_format(chosen, task, dataset.format)
        loaded = load_for_evaluation(model, dataset.format, dataset.labels, self.seed)
        _check_task(chosen, loaded)
        if not isinstance(model, tuple | list):
            loaded.model.to(self.device or _default_device())
        with inference(loaded.model):
            values, predictions = self._compute(chosen, task, loaded, dataset, table, split)
        return EvalResults(
            metrics={m.name: values[m.name] for m in chosen}, model=loaded.name, split=split,
            num_examples=len(table), predictions=predictions, task=loaded.task,
            labels=task.model_labels(dataset.labels),
            details={key: values[key] for key in ("scored_on", "extraction") if key in values},
        )  # fmt: skip

    def preview(self, model: Any, dataset) -> str | None:
        """The exact prompt generation gets for the first evaluated row (None when no metric generates).

        Only the tokenizer of `model` is loaded: its chat template renders the prompt, as in training.
        """
        from modelops.evaluate.prompts import preview
        from modelops.models.loading import load_tokenizer

        generates = self.metrics is None or any(m.kind in ("generative", "custom") for m in self.metrics)
        if not task_for(None, dataset.format).generates(dataset.format) or not generates:
            return None
        split = self.split or dataset.eval_split()
        return preview(dataset, split, load_tokenizer(str(model)), self.num_fewshot, self.seed)

    def compare(self, base: EvalResults, tuned: EvalResults) -> dict[str, dict[str, Any]]:
        """Base -> fine-tuned delta of each per-example metric, with its paired bootstrap interval and McNemar p.

        See `modelops.evaluate.compare`; ``resamples`` and ``seed`` of this Evaluator seed the bootstrap.
        """
        from modelops.evaluate.compare import paired_deltas

        return paired_deltas(base, tuned, self.resamples, self.seed)

    def _compute(self, chosen, task: Task, loaded, dataset, table, split: str) -> tuple[dict[str, Any], list[dict]]:
        values: dict[str, Any] = {}
        predictions: list[dict] = []
        preference = [m.name for m in chosen if m.kind == "preference"]
        if preference:
            return self._preference(preference, loaded, dataset, table)
        predictive = [m for m in chosen if m.kind in ("classification", "generative", "custom")]
        if predictive and task.labelled:
            values, predictions = self._classification(predictive, loaded, dataset, table, split)
        elif predictive:
            values, predictions = self._generative(predictive, loaded, dataset, table, split)
        lm = [m.name for m in chosen if m.kind == "language_model"]
        if lm:
            scores = self._language_model(task, loaded, dataset.format, table)
            values.update({name: scores[name] for name in lm})
            values["scored_on"] = scores["scored_on"]
            predictions = with_row_scores(predictions, scores["rows"], table)  # per-row NLL: paired intervals
        return values, predictions

    # -- classification -----------------------------------------------------------------------

    def _classification(self, chosen, loaded, dataset, table, split: str):
        texts, raw_labels = list(table["text"]), list(table["label"])
        causal = model_task(loaded.task).causal  # a causal LM scores each label's verbalisation
        if not causal:
            labels = loaded.labels or []
            references = _label_ids(raw_labels, labels, split, loaded.name)
            scores = self._classifier_scores(loaded, texts)
        else:
            labels = dataset.labels or []
            references = _label_ids(raw_labels, labels, split, loaded.name)
            scores = self._choice_scores(loaded, texts, labels)
        predicted = scores.argmax(axis=1)
        values = _classification_values(chosen, predicted, references, len(labels), self.average)
        rows = [
            {"text": text, "label": labels[ref], "prediction": labels[pred]}
            for text, ref, pred in zip(texts, references.tolist(), predicted.tolist(), strict=True)
        ]
        if causal:
            for row, row_scores in zip(rows, scores.tolist(), strict=True):
                row["loglikelihoods"] = dict(zip(labels, row_scores, strict=True))
        return values, rows

    def _classifier_scores(self, loaded, texts: list[str]):
        from modelops.evaluate.scoring import classifier_logits

        context = getattr(loaded.model.config, "max_position_embeddings", None) or 512
        limit = min(getattr(loaded.tokenizer, "model_max_length", context) or context, context, 512)
        return classifier_logits(loaded.model, loaded.tokenizer, texts, self.batch_size, self.max_length or limit)

    def _choice_scores(self, loaded, texts: list[str], labels: list[str]):
        from modelops.evaluate.scoring import choice_loglikelihoods

        try:
            prompts = [self.prompt_template.format(text=text) for text in texts]
            choices = [self.choice_template.format(label=label) for label in labels]
        except (KeyError, IndexError) as exc:
            raise EvaluationError(
                f"evaluator.prompt_template/choice_template: unknown field {exc}; use {{text}} and {{label}}"
            ) from exc
        max_length = self.max_length or _context_length(loaded.model)
        return choice_loglikelihoods(loaded.model, loaded.tokenizer, prompts, choices, self.batch_size, max_length)

    # -- generation ---------------------------------------------------------------------------

    def _generative(self, chosen, loaded, dataset, table, split: str):
        from modelops.evaluate.prompts import generative_prompts
        from modelops.models.generation import generate

        prompts, references = generative_prompts(
            table, dataset, split, loaded.tokenizer, self.num_fewshot, self.seed
        )  # fmt: skip
        outputs = generate(
            loaded.model, loaded.tokenizer, prompts, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
            max_length=self.max_length, stop=self.stop,
        )  # fmt: skip
        return self._score_generations(chosen, prompts, outputs, references)

    def _score_generations(self, chosen, prompts: list[str], outputs: list[str], references: list[str]):
        """Filter both sides, compare, and count the references nothing could be extracted from."""
        from modelops.data.answers import build_filters, extract_and_match, resolve_filters
        from modelops.tasks.metrics import GENERATIVE_METRICS

        spec = resolve_filters(self.filters, references)
        filters = build_filters(spec, "evaluator.filters")
        found = [
            extract_and_match(filters, o, r, self.normalize, self.match)
            for o, r in zip(outputs, references, strict=True)
        ]
        rows = [
            {"prompt": p, "reference": r, "prediction": o, "extracted_prediction": e.prediction,
             "extracted_reference": e.reference, "exact_match": e.match}
            for p, r, o, e in zip(prompts, references, outputs, found, strict=True)
        ]  # fmt: skip
        scored = [e.match for e in found if e.match is not None]
        unextractable = [i for i, e in enumerate(found) if e.match is None]
        if not scored:
            raise EvaluationError(
                f"evaluator.filters {spec!r}: nothing could be extracted from any of the {len(found)} references"
            )
        values: dict[str, Any] = {}
        for metric in chosen:
            if metric.fn is GENERATIVE_METRICS.get(metric.name):  # the built-in exact match, on extracted answers
                values["exact_match"] = sum(scored) / len(scored)
            else:
                values[metric.name] = metric.fn(outputs, references)
        values["extraction"] = {"filters": spec, "match": self.match, "unextractable_references": len(unextractable),
                                "unextractable_rows": unextractable}  # fmt: skip
        if unextractable:
            import warnings

            warnings.warn(
                f"{len(unextractable)} reference(s) gave no answer through evaluator.filters and are not scored "
                f"(rows {unextractable[:10]}{'...' if len(unextractable) > 10 else ''}; see predictions.jsonl)",
                stacklevel=2,
            )
        return values, rows

    # -- preference pairs ---------------------------------------------------------------------

    def _preference(self, names: list[str], loaded, dataset, table):
        from modelops.evaluate import preference as pref

        max_length = self.max_length or _context_length(loaded.model)
        policy = pref.pair_logps(loaded.model, loaded.tokenizer, table, self.batch_size, max_length)
        reference = None
        if pref.needs_reference(names):
            reference = self._reference_logps(loaded, dataset, table, max_length)
        values = pref.preference_values(names, policy, reference)
        return values, pref.prediction_rows(table, policy, reference)

    def _reference_logps(self, loaded, dataset, table, max_length: int):
        """Score with the reference: `reference`, the adapter disabled, the recorded base, or the model itself."""
        from modelops.evaluate import preference as pref
        from modelops.evaluate.batching import inference
        from modelops.evaluate.models import load_for_evaluation

        ref = self.reference or pref.recorded_base(loaded.name)
        if ref is None and hasattr(loaded.model, "disable_adapter"):
            with loaded.model.disable_adapter():
                return pref.pair_logps(loaded.model, loaded.tokenizer, table, self.batch_size, max_length)
        if ref is None:
            return pref.pair_logps(loaded.model, loaded.tokenizer, table, self.batch_size, max_length)
        base = load_for_evaluation(ref, dataset.format, dataset.labels, self.seed)
        base.model.to(next(loaded.model.parameters()).device)
        with inference(base.model):
            # Scored with the evaluated model's tokenizer: both sides must see the same token ids.
            return pref.pair_logps(base.model, loaded.tokenizer, table, self.batch_size, max_length)

    # -- language modelling -------------------------------------------------------------------

    def _language_model(self, task: Task, loaded, data_format: str, table) -> dict[str, Any]:
        from modelops.evaluate.perplexity import labelled_scores, language_model_scores

        if self.score_on == "all" or not task.generates(data_format):
            scores = language_model_scores(
                loaded.model, loaded.tokenizer, task.lm_texts(table, data_format, loaded.tokenizer),
                max_length=self.max_length, stride=self.stride, batch_size=self.batch_size,
            )  # fmt: skip
            return {**scores, "scored_on": "all"}
        rows, row_bytes = answer_tokens(table, data_format, loaded.tokenizer)
        scores = labelled_scores(
            loaded.model, rows, row_bytes, self.max_length, self.stride, self.batch_size
        )  # fmt: skip
        return {**scores, "scored_on": "answer"}


def answer_tokens(table, data_format: str, tokenizer) -> tuple[list[tuple[list[int], list[int]]], list[int]]:
    """Each row's ``(input_ids, labels)`` as training tokenises it (loss on the answer), and each answer's bytes.

    The mask is training's own (`modelops.tasks.sft.tokenize_causal_lm`, ``loss_on="answer"``), without
    truncation: the evaluation windows handle long rows. The bytes are those of the scored tokens, decoded.
    """
    from modelops.models.labels import IGNORE_INDEX
    from modelops.tasks.sft import tokenize_causal_lm

    longest = 1 << 30  # no truncation here; the sliding window of `labelled_scores` covers long rows
    tokens = tokenize_causal_lm(table, data_format, tokenizer, max_length=longest, loss_on="answer")
    rows = list(zip(tokens["input_ids"], tokens["labels"], strict=True))
    scored = [[t for t in labels[1:] if t != IGNORE_INDEX] for _, labels in rows]
    row_bytes = [len(tokenizer.decode(ids).encode("utf-8")) for ids in scored]
    return rows, row_bytes


def _check_format(chosen, task: Task, data_format: str) -> None:
    """Refuse metrics that the data (its task and format) cannot give, before any model is loaded."""
    for metric in chosen:
        if metric.kind == "classification" and not task.labelled:
            raise EvaluationError(
                f"metric {metric.name!r} needs classification data (text, label); this dataset's format is "
                f"{data_format!r}"
            )
        if metric.kind == "generative" and not task.generates(data_format):
            raise EvaluationError(
                f"metric {metric.name!r} needs prompt/answer data ({', '.join(GENERATIVE_FORMATS)}); "
                f"this dataset's format is {data_format!r}"
            )
        if (metric.kind == "preference") != task.pairs:
            raise EvaluationError(
                f"metric {metric.name!r}: preference metrics score preference data (prompt, chosen, rejected), "
                f"other metrics other data; this dataset's format is {data_format!r}"
            )
        if metric.kind == "custom" and not (task.labelled or task.generates(data_format)):
            raise EvaluationError(f"metric {metric.name!r}: text data has no predictions to score a custom metric on")


def _check_task(chosen, loaded) -> None:
    """Refuse LM and generative metrics for a sequence classifier."""
    needs_lm = [m.name for m in chosen if m.kind in ("language_model", "generative", "preference")]
    if needs_lm and not model_task(loaded.task).causal:
        raise EvaluationError(
            f"metric(s) {needs_lm} need a causal language model; {loaded.name!r} is a sequence classifier "
            f"({type(loaded.model).__name__})"
        )


def _classification_values(chosen, predicted, references, num_labels: int, average: str) -> dict[str, Any]:
    import functools

    from modelops.tasks.metrics import compute_classification

    builtin = [m.name for m in chosen if m.kind == "classification" and not isinstance(m.fn, functools.partial)]
    values = compute_classification(builtin, predicted, references, num_labels, average)  # also checks the ids
    for metric in chosen:
        if metric.name not in values:
            bound = getattr(metric.fn, "keywords", {}) or {}
            kwargs = {} if "average" in bound else {"average": average}
            values[metric.name] = metric.fn(predicted, references, num_labels, **kwargs)
    return values


def _label_ids(values: list, labels: list[str], split: str, model: str):
    """Reference class ids; an EvaluationError naming the row for a label the model does not know."""
    import numpy as np

    label2id = {name: i for i, name in enumerate(labels)}
    ids = np.empty(len(values), dtype=np.int64)
    for row, value in enumerate(values):
        key = str(value)
        if key not in label2id:
            raise EvaluationError(
                f"split {split!r} row {row + 1}, field 'label': {value!r} is not a label model {model!r} knows "
                f"({labels})"
            )
        ids[row] = label2id[key]
    return ids


def _context_length(model) -> int:
    length = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if not length:
        raise EvaluationError(f"{type(model).__name__}.config gives no context length; set evaluator.max_length")
    return int(length)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
