"""GRPO in the training loop: it steps and logs, resumes exactly (mid-generation too), splits groups over two
processes, refuses what it cannot train, and (slow) raises the correctness reward of a warmed-up tiny Llama."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelops.errors import ConfigError
from modelops.train.checkpoint import complete_checkpoints

ROOT = Path(__file__).resolve().parents[1]
LORA = {"_target_": "peft.LoraConfig", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "lora_dropout": 0.1,
        "target_modules": ["q_proj", "v_proj"]}  # fmt: skip
MODEL = {"_target_": "modelops.models.spec.ModelSpec", "name_or_path": "tiny-llama", "task": "causal_lm",
         "max_length": 48, "peft": LORA}  # fmt: skip
REWARDS = [
    {"_target_": "modelops.tasks.rewards.correctness", "_partial_": True, "column": "answer"},
    {"_target_": "modelops.tasks.rewards.format_match", "_partial_": True, "pattern": "#"},
]
# LoRA with dropout, a KL to the adapter-disabled reference, two steps per generation, accumulation, warmup:
# every kind of state a resume must restore (the rollouts between their steps, the sampling RNG included).
TRAINER = {"objective": "grpo", "epochs": 1, "batch_size": 2, "gradient_accumulation_steps": 2, "num_generations": 4,
           "max_new_tokens": 6, "num_iterations": 2, "beta": 0.05, "learning_rate": 5e-3, "warmup_ratio": 0.2,
           "log_every": 1, "seed": 3, "preview_examples": 0, "reward_weights": [1.0, 0.5]}  # fmt: skip


def _rewards():
    from modelops.tasks import rewards

    return [functools.partial(rewards.correctness, column="answer"), functools.partial(rewards.format_match,
                                                                                       pattern="#")]  # fmt: skip


def _dataset(n: int = 16):
    from modelops.data.arithmetic import arithmetic_demo
    from modelops.data.dataset import Dataset

    return Dataset({"train": arithmetic_demo(n=n, seed=2, validation=0, test=0, largest=5)["train"]}, format="prompt")


def _adapter(run_dir: Path):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model" / "adapter_model.safetensors"))


def _max_diff(a, b) -> float:
    assert set(a) == set(b) and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _train_in_process(run_dir: Path, dataset, **options):
    from peft import LoraConfig

    from modelops.models.spec import ModelSpec
    from modelops.train.config import TrainConfig
    from modelops.train.loop import train

    lora = LoraConfig(**{k: v for k, v in LORA.items() if k != "_target_"})
    spec = ModelSpec(name_or_path="tiny-llama", task="causal_lm", max_length=48, peft=lora)
    config = TrainConfig(**{**TRAINER, "rewards": _rewards(), **options})
    return train(spec, dataset, config, run_dir)


@pytest.mark.slow
def test_grpo_steps_logs_and_resumes_mid_generation_exactly(tmp_path):
    dataset = _dataset(16)  # 8 batches of 2 prompts, 4 generations (windows of 2 batches), 2 steps each: 8 steps
    full = tmp_path / "full"
    result = _train_in_process(full, dataset, checkpoint_every=3, keep_checkpoints=10)
    assert result.steps == 8
    rows = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    generated = [r for r in rows if "reward" in r]
    assert [r["step"] for r in generated] == [1, 3, 5, 7]  # a generation every num_iterations steps
    for row in generated:
        assert 0 <= row["rewards/correctness/mean"] <= 1 and 0 <= row["rewards/format_match/mean"] <= 1
        assert row["reward"] == pytest.approx(row["rewards/correctness/mean"] + 0.5 * row["rewards/format_match/mean"])
        assert 1 <= row["completions/mean_length"] <= 6 and 0 <= row["completions/clipped_ratio"] <= 1
    for row in rows:
        assert row["kl"] >= 0 and row["entropy"] > 0 and 0 <= row["clip_ratio/region_mean"] <= 1
    assert rows[0]["kl"] == 0.0  # the first step's policy is the reference
    assert any(r["kl"] > 0 for r in rows[1:])
    initial = _initial_adapter(tmp_path)
    assert _max_diff(_adapter(full), initial) > 0  # the adapter moved
    # step 3 is between the two steps on the second generation: the rollouts come back from the checkpoint
    resumed = tmp_path / "from-3"
    shutil.copytree(full / "checkpoints" / "step-3", resumed / "checkpoints" / "step-3")
    assert _train_in_process(resumed, dataset, checkpoint_every=3).resumed_from.endswith("step-3")
    assert _max_diff(_adapter(resumed), _adapter(full)) == 0.0
    again = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert again == [{**r, "tokens_per_s": again[i]["tokens_per_s"]} for i, r in enumerate(rows[3:])]


def _initial_adapter(tmp_path: Path):
    """The LoRA weights before any step (the B matrices are zero: only A is random)."""
    run = tmp_path / "initial"
    _train_in_process(run, _dataset(16), max_steps=1, learning_rate=1e-12, warmup_ratio=0.0)
    return _adapter(run)


def test_grpo_refuses_what_it_cannot_train(tmp_path):
    from modelops.data.arithmetic import arithmetic_demo

    with pytest.raises(ConfigError, match=r"trainer.rewards: trainer.objective=grpo needs at least one reward"):
        _train_in_process(tmp_path / "a", _dataset(), rewards=[])
    completion = arithmetic_demo(n=16, validation=0, test=0, style="completion")
    with pytest.raises(ConfigError, match=r"needs `prompt` data.*not 'completion'.*set dataset.format=prompt"):
        _train_in_process(tmp_path / "b", completion)
    with pytest.raises(ConfigError, match=r"trainer.num_generations: must be >= 2"):
        _train_in_process(tmp_path / "c", _dataset(), num_generations=1)
    with pytest.raises(ConfigError, match=r"trainer.loss_type: must be one of"):
        _train_in_process(tmp_path / "d", _dataset(), loss_type="ppo")
    with pytest.raises(ConfigError, match=r"trainer.max_new_tokens=60 leaves no room for a prompt"):
        _train_in_process(tmp_path / "e", _dataset(), max_new_tokens=60)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def _start(run_dir: Path, dataset, **options):
    from modelops import FineTuningJob

    job = FineTuningJob(model=MODEL, dataset=dataset, output_dir=run_dir, tracking="none", **{**TRAINER, **options})
    return job.start()


def _resume_worker(run_dir: Path) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "modelops.run", str(run_dir)]
    return subprocess.run(command, env=env, capture_output=True, timeout=900).returncode


@pytest.mark.slow
def test_grpo_job_sigkilled_mid_run_resumes_to_the_same_weights(tmp_path):
    # Rewards given as Python partials on one side and as config nodes on the other: the same training.
    full = _start(tmp_path / "full", _dataset(24), checkpoint_every=2, rewards=_rewards())
    assert full.wait(timeout=900) == "succeeded", full.error
    job = _start(tmp_path / "run", _dataset(24), checkpoint_every=2, rewards=REWARDS)
    deadline = time.monotonic() + 600
    while not complete_checkpoints(job.run_dir):
        assert job.status in ("queued", "validating", "running"), job.error
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(job._read()["pid"], signal.SIGKILL)
    assert job.wait(timeout=60) == "failed"
    killed_at = int(complete_checkpoints(job.run_dir)[-1].name[5:])
    assert killed_at < 12
    assert _resume_worker(job.run_dir) == 0
    doc = json.loads((job.run_dir / "job.json").read_text())
    assert doc["status"] == "succeeded"
    assert any(e["message"] == "resumed" and e["step"] == killed_at for e in doc["events"])
    assert _max_diff(_adapter(job.run_dir), _adapter(full.run_dir)) == 0.0


def test_a_reward_function_the_job_cannot_import_is_refused_at_once(tmp_path):
    from modelops import FineTuningJob

    with pytest.raises(ConfigError, match=r"trainer.rewards.0: .* cannot be imported by the job's own process"):
        FineTuningJob(model=MODEL, dataset=_dataset(), output_dir=tmp_path / "j", **{**TRAINER,
                      "rewards": [lambda prompts, completions, **columns: [1.0] * len(completions)]})  # fmt: skip
    assert not (tmp_path / "j").exists()


@pytest.mark.slow
def test_grpo_two_processes_split_the_groups_and_reduce_the_rewards(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = ["+recipe=grpo_tiny", "model.name_or_path=tiny-llama", "dataset.n=40", "dataset.validation=0",
            "dataset.test=0", "trainer.max_steps=3", "trainer.batch_size=2", "trainer.num_generations=4",
            "trainer.max_new_tokens=4", "trainer.log_every=1", "trainer.eval_every=null", "tracking=none",
            "hydra.run.dir=outputs/grpo"]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "modelops", *args]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "outputs" / "grpo"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row in rows:
        # 2 processes x 2 prompts x 4 completions = 16 completions: a correctness mean is a multiple of 1/16,
        # reduced over both processes (one process alone would give multiples of 1/8)
        assert abs(row["rewards/correctness/mean"] * 16 - round(row["rewards/correctness/mean"] * 16)) < 1e-6
        assert 1 <= row["completions/mean_length"] <= 4
    job = json.loads((run_dir / "job.json").read_text())
    assert job["status"] == "succeeded" and (run_dir / "model" / "modelops.json").exists()


def _held_out_correctness(model_dir: Path) -> float:
    """Greedy completions of 300 fresh prompts (another seed than the recipe's data), scored by `correctness`."""
    from transformers import AutoModelForCausalLM

    from modelops.data.arithmetic import arithmetic_rows
    from modelops.models.generation import generate
    from modelops.models.loading import load_tokenizer
    from modelops.tasks.rewards import correctness

    rows = arithmetic_rows(300, seed=123, style="prompt", largest=5)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompts = [r["prompt"] for r in rows]
    completions = generate(model, load_tokenizer(str(model_dir)), prompts, max_new_tokens=20, batch_size=64)
    scores = correctness(prompts, completions, answer=[r["answer"] for r in rows])
    return sum(scores) / len(scores)


@pytest.mark.slow
def test_grpo_tiny_learns_the_sums(tmp_path):
    """The two commands of `recipes/grpo_tiny.yaml`, verbatim but for tracking: GRPO raises the correctness of
    the warmed-up tiny Llama on held-out prompts clearly above the start model's."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    for command in (["+recipe=grpo_tiny_warmup", "hydra.run.dir=outputs/grpo_tiny_warmup"],
                    ["+recipe=grpo_tiny", "hydra.run.dir=outputs/grpo_tiny"]):  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "modelops", *command, "tracking=none"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=1200)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    start = _held_out_correctness(tmp_path / "outputs" / "grpo_tiny_warmup" / "model")
    tuned = _held_out_correctness(tmp_path / "outputs" / "grpo_tiny" / "model")
    assert 0.1 < start < 0.5  # the warm-up knows the form and some sums: rewards to learn from
    assert tuned >= start + 0.08, (start, tuned)
    rows = [
        json.loads(line) for line in (tmp_path / "outputs" / "grpo_tiny" / "metrics.jsonl").read_text().splitlines()
    ]
    rewards = [r["reward"] for r in rows if "reward" in r]
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3  # the training curve rises too
