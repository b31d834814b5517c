"""``evaluator=lm_eval``: run lm-evaluation-harness tasks on the base and the fine-tuned model.

`HarnessEvaluator.evaluate` calls ``lm_eval.simple_evaluate`` with the harness's own HF model class (``HFLM``) on
the model directory: a trained adapter is passed as ``peft=`` over its base model, never merged. Tasks come from
the harness or from local task YAMLs (``include_path``); nothing is downloaded when a task reads local files, so
it runs with ``HF_DATASETS_OFFLINE=1``. The project ships one local task, ``modelops_arithmetic`` (small sums
with GSM8K-style ``#### N`` answers and the GSM8K ``strict-match`` filter), whose data it generates
(`write_arithmetic_task`). Results land in `EvalResults` as ``<task>.<metric>.<filter>`` names made MLflow-safe
(``modelops_arithmetic.exact_match.strict-match``), so they reach ``eval.json``, the summary and MLflow like any
metric, and the per-sample scores give paired base -> fine-tuned intervals.

``lm-eval`` is an optional extra: ``pip install 'modelops[lm_eval]'`` (or ``pip install lm-eval``).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from modelops.errors import ConfigError, EvaluationError
from modelops.evaluate.results import EvalResults
from modelops.models.loading import trained_adapter_info
from modelops.models.resolve import resolve_name_or_path
from modelops.stats import paired_delta

ARITHMETIC_TASK = "modelops_arithmetic"
INSTALL_HINT = "evaluator=lm_eval needs lm-evaluation-harness: pip install 'modelops[lm_eval]' (or pip install lm-eval)"
_MLFLOW_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")

#: The shipped task, as lm-eval's GSM8K config writes it (target, filter, exact_match options), over local files.
_ARITHMETIC_CONFIG: dict[str, Any] = {
    "task": ARITHMETIC_TASK,
    "dataset_path": "json",
    "output_type": "generate_until",
    "training_split": "train",
    "fewshot_split": "train",
    "test_split": "test",
    "doc_to_text": "Question: {{question}}\nAnswer:",
    "doc_to_target": "{{answer}}",
    "target_delimiter": " ",
    "fewshot_delimiter": "\n\n",
    "generation_kwargs": {"until": ["Question:", "\n\n"], "do_sample": False, "max_gen_toks": 32},
    "filter_list": [{"name": "strict-match", "filter": [
        {"function": "regex", "regex_pattern": r"#### (\-?[0-9\.\,]+)"}, {"function": "take_first"}]}],
    "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, "ignore_case": True,
                     "ignore_punctuation": False, "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}],
    "metadata": {"version": 1.0},
}  # fmt: skip


def arithmetic_rows(count: int, seed: int) -> list[dict[str, str]]:
    """Small additions and subtractions, each answer a one-line worked step ending in ``#### N``."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b = rng.randint(1, 60), rng.randint(1, 40)
        op, value = rng.choice([("+", a + b), ("-", a - b)])
        rows.append({"question": f"What is {a} {op} {b}?", "answer": f"{a} {op} {b} = {value}\n#### {value}"})
    return rows


def write_arithmetic_task(directory: str | Path, test_rows: int = 40, train_rows: int = 40, seed: int = 0) -> Path:
    """Write the ``modelops_arithmetic`` task (YAML and its train/test JSONL) into `directory`; return it.

    The directory is an lm-eval ``include_path``. The same rows serve our own Evaluator as completion data
    (prompt ``doc_to_text``, completion ``" " + answer``), which is how tests compare the two.
    """
    import yaml

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, count, split_seed in (("train", train_rows, seed + 1), ("test", test_rows, seed)):
        path = directory / f"{ARITHMETIC_TASK}_{split}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in arithmetic_rows(count, split_seed)))
        files[split] = str(path.resolve())
    config = {**_ARITHMETIC_CONFIG, "dataset_kwargs": {"data_files": files}}
    (directory / f"{ARITHMETIC_TASK}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


class HarnessEvaluator:
    """Evaluate with lm-evaluation-harness tasks (``evaluator=lm_eval``); the dataset of the run is not used.

    Args:
        tasks: harness task names, or names of tasks in `include_path`; the shipped ``modelops_arithmetic``
            is generated into `task_dir` when named.
        include_path: folders of local task YAMLs (``TaskManager(include_path=...)``).
        num_fewshot: few-shot examples per prompt; None: each task's own setting.
        batch_size: the harness's batch size.
        limit: at most this many examples per task (None: all).
        apply_chat_template: render prompts with the tokenizer's chat template.
        add_bos_token: prepend the BOS token as training does (the harness's default for most models is not to).
        task_dir: where the shipped task and its data are written; None: a fresh temporary folder.
        seed: the harness's seeds and the bootstrap's.
        resamples: paired bootstrap resamples of the base -> fine-tuned intervals.
        device: ``cuda`` when available, else ``cpu``, unless given.
    """

    def __init__(
        self, tasks: list[str], include_path: list[str] | None = None, num_fewshot: int | None = None,
        batch_size: int = 8, limit: int | None = None, apply_chat_template: bool = False, add_bos_token: bool = True,
        task_dir: str | None = None, seed: int = 0, resamples: int = 10_000, device: str | None = None,
    ):  # fmt: skip
        if not tasks:
            raise ConfigError("evaluator.tasks: name at least one lm-eval task (e.g. [modelops_arithmetic])")
        self.tasks = list(tasks)
        self.include_path = [str(p) for p in include_path or []]
        self.num_fewshot = num_fewshot
        self.batch_size = batch_size
        self.limit = limit
        self.apply_chat_template = apply_chat_template
        self.add_bos_token = add_bos_token
        self.task_dir = task_dir
        self.seed = seed
        self.resamples = resamples
        self.device = device
        _require_lm_eval()

    def evaluate(self, model: Any, dataset=None) -> EvalResults:
        """Run the tasks on `model` (a model directory, run directory or any model reference); `dataset` unused."""
        import lm_eval
        from lm_eval.tasks import TaskManager

        include = list(self.include_path)
        if ARITHMETIC_TASK in self.tasks:
            import tempfile

            where = self.task_dir or tempfile.mkdtemp(prefix="modelops_lm_eval_")
            include.append(str(write_arithmetic_task(where).resolve()))
        out = lm_eval.simple_evaluate(
            model=self._hflm(model), tasks=self.tasks, num_fewshot=self.num_fewshot, limit=self.limit,
            task_manager=TaskManager(include_path=include or None), log_samples=True,
            apply_chat_template=self.apply_chat_template, random_seed=self.seed, numpy_random_seed=self.seed,
            torch_random_seed=self.seed, fewshot_random_seed=self.seed,
        )  # fmt: skip
        return _results(out, str(model))

    def preview(self, model: Any, dataset) -> str | None:
        """Nothing: the harness renders its own prompts (see its ``--write_out``)."""
        return None

    def compare(self, base: EvalResults, tuned: EvalResults) -> dict[str, dict[str, Any]]:
        """Paired interval (and McNemar p for 0/1 scores) of each task metric, from the per-sample scores."""
        deltas = {}
        for name in sorted(base.details.get("samples", {}).keys() & tuned.details.get("samples", {}).keys()):
            a, b = base.details["samples"][name], tuned.details["samples"][name]
            if len(a) == len(b) and a:
                binary = all(v in (0, 1) for v in [*a, *b])
                deltas[name] = paired_delta(a, b, binary, self.resamples, self.seed)
        return deltas

    def _hflm(self, ref: Any):
        """The harness's HF model on our model: a trained adapter over its base (``peft=``), unmerged."""
        from lm_eval.models.huggingface import HFLM

        run_model = Path(str(ref)).expanduser() / "model"
        source = run_model if (run_model / "modelops.json").is_file() else Path(resolve_name_or_path(str(ref)))
        info = trained_adapter_info(source)
        base = resolve_name_or_path(info["base_model"]) if info else str(source)
        device = self.device or _default_device()
        return HFLM(
            pretrained=str(base), peft=str(source) if info else None, tokenizer=str(source),
            batch_size=self.batch_size, device=device, dtype="float32" if device == "cpu" else "auto",
            add_bos_token=self.add_bos_token,
        )  # fmt: skip


def _results(out: dict[str, Any], model: str) -> EvalResults:
    """Metrics ``task.metric.filter`` (MLflow-safe), per-sample scores and the configs in `details`."""
    metrics: dict[str, float] = {}
    for task, values in out["results"].items():
        for key, value in values.items():
            if "," not in key or "_stderr" in key or not isinstance(value, int | float):
                continue
            metric, filter_name = key.split(",", 1)
            metrics[mlflow_safe(f"{task}.{metric}.{filter_name}")] = float(value)
    samples: dict[str, list[float]] = {}
    rows: list[dict[str, Any]] = []
    for task, task_samples in (out.get("samples") or {}).items():
        for sample in sorted(task_samples, key=lambda s: s["doc_id"]):
            row = {"task": task, "doc_id": sample["doc_id"], "filter": sample.get("filter"),
                   "prompt": sample["arguments"][0][0], "target": sample["target"], "prediction": sample["resps"][0][0],
                   "extracted_prediction": sample["filtered_resps"][0]}  # fmt: skip
            for metric in out["results"][task]:
                name = metric.split(",")[0]
                if name in sample and isinstance(sample[name], int | float):
                    row[name] = float(sample[name])
                    key = mlflow_safe(f"{task}.{name}.{sample.get('filter')}")
                    samples.setdefault(key, []).append(float(sample[name]))
            rows.append(row)
    num = max((len(v) for v in samples.values()), default=0)
    details = {"samples": samples, "harness": {"tasks": list(out["results"]), "versions": out.get("versions", {}),
                                               "n-shot": out.get("n-shot", {})}}  # fmt: skip
    return EvalResults(metrics, model, "harness", num, rows, task="causal_lm", details=details)


def mlflow_safe(name: str) -> str:
    """A metric name MLflow accepts: letters, digits, ``_ - . /`` and spaces; anything else becomes ``_``."""
    return _MLFLOW_UNSAFE.sub("_", name)


def _require_lm_eval() -> None:
    import importlib.util

    if importlib.util.find_spec("lm_eval") is None:
        raise EvaluationError(INSTALL_HINT)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
