"""One object per task: `task_for` picks it, training and evaluation ask it for their pieces."""

from __future__ import annotations

import json

import pytest

from modelops.errors import ConfigError, DataError
from modelops.models.spec import ModelSpec
from modelops.tasks import task as tasks
from modelops.tasks.task import CausalLMSFT, Preference, SequenceClassification, task_for
from modelops.train.config import TrainConfig

LM = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=128)
CLS = ModelSpec(name_or_path="minilm", task="seq_cls", max_length=64)


class _Data:
    """The surface `Task.check` reads: a format and the class labels."""

    def __init__(self, fmt: str, labels=None):
        self.format, self.labels = fmt, labels


@pytest.mark.parametrize(
    ("spec", "objective", "fmt", "kind"),
    [(CLS, "sft", "classification", SequenceClassification), (LM, "sft", "chat", CausalLMSFT),
     (LM, "sft", "preference", CausalLMSFT), (LM, "dpo", "preference", Preference),
     (LM, "orpo", "preference", Preference), (CLS, "simpo", "preference", Preference)],
)  # fmt: skip
def test_task_for_picks_by_objective_then_by_model_task(spec, objective, fmt, kind):
    task = task_for(spec, fmt, objective)
    assert type(task) is kind and task.objective == objective


def test_task_for_a_data_format_is_the_task_evaluation_scores_it_as():
    assert {fmt: type(task_for(None, fmt)).__name__ for fmt in ("classification", "text", "chat", "preference")} == {
        "classification": "SequenceClassification", "text": "CausalLMSFT", "chat": "CausalLMSFT",
        "preference": "Preference",
    }  # fmt: skip
    with pytest.raises(DataError, match="no task scores 'tabular' data"):
        task_for(None, "tabular")


@pytest.mark.parametrize(
    ("spec", "objective", "data", "error", "message"),
    [
        (CLS, "sft", _Data("text"), ConfigError, r"model.task=seq_cls needs classification data, .* 'text'"),
        (LM, "sft", _Data("classification", ["a", "b"]), ConfigError,
         r"model.task=causal_lm trains on \['text', 'completion', 'instruction', 'chat', 'preference'\] data"),
        (CLS, "sft", _Data("classification", ["a"]), DataError, r"a classifier needs at least two classes; .* 1"),
        (CLS, "dpo", _Data("preference"), ConfigError, r"trainer.objective=dpo: preference tuning is for causal LMs"),
        (LM, "ipo", _Data("chat"), ConfigError, r"trainer.objective=ipo trains on preference pairs .* not 'chat'"),
    ],
)  # fmt: skip
def test_a_wrong_combination_raises_the_task_message(spec, objective, data, error, message):
    with pytest.raises(error, match=message):
        task_for(spec, data.format, objective).check(spec, data, TrainConfig(objective=objective))


def test_packing_is_refused_by_the_tasks_that_cannot_pack():
    packing = TrainConfig(batching="packing")
    with pytest.raises(ConfigError, match="only for causal LMs"):
        task_for(CLS, "classification").check(CLS, _Data("classification", ["a", "b"]), packing)
    task_for(LM, "text").check(LM, _Data("text"), packing)  # causal LM SFT packs


def test_eval_metric_is_checked_against_the_tasks_own_metrics():
    from modelops.train.config import EVAL_METRICS

    # The loop's table is the tasks' own (the values it had before tasks were objects).
    assert EVAL_METRICS == {"seq_cls": ("loss", "accuracy", "f1"), "causal_lm": ("loss", "perplexity"),
                            "preference": ("loss", "reward_accuracy", "reward_margin"),
                            "grpo": ("reward",)}  # fmt: skip
    config = TrainConfig(eval_every=2, eval_metric="accuracy")
    with pytest.raises(ConfigError, match=r"'accuracy' is not tracked for causal_lm; use one of \['loss', 'perp"):
        task_for(LM, "text").check_eval_metric(LM, config)
    with pytest.raises(ConfigError, match=r"not tracked for causal_lm with trainer.objective=dpo"):
        task_for(LM, "preference", "dpo").check_eval_metric(LM, config)
    task_for(CLS, "classification").check_eval_metric(CLS, config)


def test_evaluation_defaults_come_from_the_task_of_each_format():
    from modelops.evaluate.evaluator import DEFAULT_METRICS

    assert DEFAULT_METRICS == {
        "classification": ["accuracy", "f1", "precision", "recall", "confusion_matrix"],
        "text": ["loss", "perplexity", "bits_per_byte"],
        "completion": ["exact_match"], "instruction": ["exact_match"], "chat": ["exact_match"],
        "preference": ["preference_accuracy", "reward_accuracy", "reward_margin"],
    }  # fmt: skip


# -- a new objective: one task object and one registry entry, nothing in modelops.train ----------------


_CALLED = {"loss": 0, "step": 0}


class _SummedCrossEntropy:
    """A loss step written apart from modelops: HF's own mean loss of the batch times its target count."""

    def __call__(self, model, batch):
        _CALLED["loss"] += 1
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        return model(**inputs, labels=batch["labels"]).loss * batch["num_targets"]

    def metrics(self, accelerator):
        return {"toy/calls": float(_CALLED["loss"])}


class _Toy(CausalLMSFT):
    """SFT by a loss of its own, stepped by the loop's stepper that it wraps to count the steps."""

    def loss_step(self, accelerator, model, spec, config):
        return _SummedCrossEntropy()

    def stepper(self, default, accelerator, model, optimizer, scheduler, config, loss_step, tokenizer=None):
        class Counted(default):  # a stepper of its own: here the loop's, counting
            def step(self, window):
                _CALLED["step"] += 1
                return super().step(window)

        return super().stepper(Counted, accelerator, model, optimizer, scheduler, config, loss_step)


def _instruction(n_train: int):
    from modelops.data.dataset import Dataset
    from modelops.data.demo_formats import instruction_demo

    return Dataset({"train": instruction_demo(n=200, seed=1)["train"].select(range(n_train))}, format="instruction")


def _train(run_dir, dataset, objective: str):
    import functools

    import torch

    from modelops.train.loop import train

    # SGD: the update is the gradient itself, so a different loss would show in the weights.
    config = TrainConfig(objective=objective, max_steps=2, batch_size=4, gradient_accumulation_steps=2,
                         batching="pad", scheduler="constant", optimizer=functools.partial(torch.optim.SGD),
                         learning_rate=0.5, weight_decay=0.0, max_grad_norm=None, warmup_ratio=0.0, log_every=1,
                         resume=None, cache_dir=str(run_dir / "cache"), preview_examples=0,
                         chunked_loss=False)  # fmt: skip
    return train(LM, dataset, config, run_dir / "run")


def test_a_new_objective_plugs_in_with_a_task_object_and_trains_as_its_loss_says(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import modelops.train.config as train_config

    monkeypatch.setattr(train_config, "OBJECTIVES", (*train_config.OBJECTIVES, "toy"))  # its config option
    monkeypatch.setitem(tasks.OBJECTIVES, "toy", _Toy)  # its task
    _CALLED.update(loss=0, step=0)
    dataset = _instruction(16)
    toy = _train(tmp_path / "toy", dataset, "toy")
    sft = _train(tmp_path / "sft", dataset, "sft")

    assert _CALLED == {"step": 2, "loss": 4}  # 2 steps x 2 micro-batches, all through the task's pieces
    rows = [json.loads(line) for line in (tmp_path / "toy" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["toy/calls"] for row in rows if "toy/calls" in row] == [2.0, 4.0]
    # The task's loss is the built-in SFT loss written another way: the same updates, the same weights.
    assert toy.final_loss == pytest.approx(sft.final_loss, rel=1e-5)
    a, b = load_file(str(toy.model_dir / "model.safetensors")), load_file(str(sft.model_dir / "model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    saved = json.loads((toy.model_dir / "modelops.json").read_text())
    assert saved["objective"] == "toy"


def test_a_classifier_preview_shows_each_row_with_its_label(tmp_path):
    from modelops.data.dataset import Dataset
    from modelops.train.data import preview_text

    rows = [{"text": "a fine film", "label": "pos"}, {"text": "a dull film", "label": "neg"}]
    text = preview_text(Dataset.from_records(rows), CLS, TrainConfig(cache_dir=str(tmp_path)), n=2)
    assert text.count("--- example") == 2
    assert "label 'pos'" in text and "a fine film" in text.lower() and "label 'neg'" in text
