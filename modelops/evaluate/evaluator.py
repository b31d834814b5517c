"""`Evaluator`: score a base or fine-tuned model on a dataset split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelops.errors import EvaluationError
from modelops.evaluate.results import EvalResults


class Evaluator:
    """Compute metrics for a model on a dataset.

    Args:
        metrics: metric names (see `modelops.evaluate.metrics.known_metrics()`).
        batch_size: examples per forward pass (results do not depend on it).
        average: F1/precision/recall averaging: `macro` (default), `micro`, `weighted`, `binary`.
        split: the split to score; default `test`, else `validation`, else the only split.
        seed: seeds the fresh classification head of a base model, so its scores repeat.
    """

    def __init__(self, metrics=("accuracy", "f1"), batch_size: int = 64, average: str = "macro", split=None, seed=0):
        self.metrics = list(metrics)
        self.batch_size = batch_size
        self.average = average
        self.split = split
        self.seed = seed

    def evaluate(self, model: Any, dataset, metrics=None, split: str | None = None) -> EvalResults:
        """Score `model` on one split of `dataset`.

        Args:
            model: a `FineTunedModel`, a run or model directory, a model reference
                (`minilm`, a conf/model option, a path, a hub id) or a `(model, tokenizer)` pair.
            dataset: a `modelops.Dataset`.
            metrics: overrides the metrics given at construction.
            split: overrides the split given at construction.
        """
        from modelops.evaluate.metrics import compute_classification, known_metrics

        names = list(metrics or self.metrics)
        unknown = [n for n in names if n not in known_metrics()]
        if unknown:
            raise EvaluationError(f"unknown metric(s) {unknown}; known: {known_metrics()}")
        split = split or self.split or dataset.eval_split()
        table = dataset[split]
        if len(table) == 0:
            raise EvaluationError(f"split {split!r} is empty: nothing to evaluate")
        net, tokenizer, label = self._load(model, dataset)
        label2id = {name: int(i) for name, i in net.config.label2id.items()}
        references = _label_ids(table["label"], label2id, split)
        predictions = self._predict(net, tokenizer, table["text"])
        values = compute_classification(names, predictions, references, len(label2id), self.average)
        rows = [{"text": t, "label": table["label"][i], "prediction": net.config.id2label[int(p)]}
                for i, (t, p) in enumerate(zip(table["text"], predictions, strict=True))]  # fmt: skip
        return EvalResults(metrics=values, model=label, split=split, num_examples=len(table), predictions=rows)

    def _load(self, model: Any, dataset):
        from modelops.models.loading import load_model, load_tokenizer, load_trained
        from modelops.models.spec import ModelSpec

        if isinstance(model, tuple):
            return model[0].eval(), model[1], type(model[0]).__name__
        ref = str(getattr(model, "path", model))
        path = Path(ref)
        for candidate in (path, path / "model"):
            if (candidate / "modelops.json").exists():
                net, tokenizer = load_trained(candidate)
                return net, tokenizer, str(candidate)
        spec = ModelSpec(name_or_path=ref, task="seq_cls")
        net = load_model(spec, labels=dataset.labels, seed=self.seed).eval()
        return net, load_tokenizer(ref), ref

    def _predict(self, model, tokenizer, texts: list[str]):
        import numpy as np
        import torch

        max_length = min(getattr(tokenizer, "model_max_length", 512), 512)
        # Sorting by length keeps padding minimal; predictions go back to their original order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        predictions = np.empty(len(texts), dtype=np.int64)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                index = order[start : start + self.batch_size]
                enc = tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                max_length=max_length, return_tensors="pt")  # fmt: skip
                logits = model(**enc).logits
                predictions[index] = logits.argmax(-1).numpy()
        return predictions


def _label_ids(values: list, label2id: dict[str, int], split: str):
    import numpy as np

    ids = []
    for row, value in enumerate(values):
        if str(value) not in label2id:
            raise EvaluationError(
                f"split {split!r} row {row}: label {value!r} is not one the model knows {list(label2id)}"
            )
        ids.append(label2id[str(value)])
    return np.asarray(ids, dtype=np.int64)
