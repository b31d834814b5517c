"""What a run says: its lines on the console once and in Hydra's `__main__.log`; no library noise.

Also: the chat recipe on a user's single file (no validation split) runs, with a note about evaluation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
NOISE = ("FutureWarning", "is_gradient_checkpointing", "Matplotlib is building the font cache", "Saving the dataset")


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # A fresh matplotlib config dir: the font cache is built in this run, as on a new machine.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "MPLCONFIGDIR": str(cwd / "mpl")}
    env.pop("MODELOPS_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "modelops", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def _run_dir(cwd: Path) -> Path:
    (run_dir,) = [p.parent for p in (cwd / "outputs").glob("*/*/job.json")]
    return run_dir


def test_the_job_log_holds_the_run_lines_and_the_console_has_no_library_noise(tmp_path):
    overrides = [*TINY, "dataset.n_test=32", "trainer.max_steps=4", "trainer.log_every=2"]
    proc = _cli(["+recipe=lora_small", *overrides], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "mpl").is_dir()  # the premise: matplotlib ran here with a fresh config dir (a plot)
    for noise in NOISE:
        assert noise not in proc.stderr and noise not in proc.stdout, noise
    log = (_run_dir(tmp_path) / "__main__.log").read_text()
    for line in ("exact_dedup", "step 2/4 loss", "step 4/4 loss", "run directory:", "fine_tuned"):
        assert line in log, line
    assert proc.stdout.count("step 4/4 loss") == 1  # printed once, not again by a log handler


def test_saving_a_dataset_shows_no_progress_bars_and_leaves_them_as_they_were(tmp_path, capfd):
    import datasets

    from modelops import Dataset

    data = Dataset.from_records([{"text": f"row {i}", "label": "a" if i % 2 else "b"} for i in range(50)])
    datasets.enable_progress_bars()
    data.save_to_disk(tmp_path / "saved")
    assert "Saving the dataset" not in capfd.readouterr().err
    assert not datasets.are_progress_bars_disabled()
    assert Dataset.load_from_disk(tmp_path / "saved")["train"].to_list() == data["train"].to_list()


@pytest.mark.slow
def test_lora_chat_trains_on_a_single_chat_file(tmp_path):
    path = tmp_path / "chats.jsonl"
    with path.open("w") as fh:
        for i in range(24):
            messages = [{"role": "user", "content": f"What is {i} plus {i + 1}?"},
                        {"role": "assistant", "content": f"{i} plus {i + 1} is {2 * i + 1}."}]  # fmt: skip
            fh.write(json.dumps({"messages": messages}) + "\n")
    args = ["+recipe=lora_chat", "dataset=files", f"dataset.train={path}", "model.name_or_path=tiny-llama",
            "trainer.max_steps=3", "trainer.log_every=1", "evaluator.batch_size=8"]  # fmt: skip
    proc = _cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trainer.eval_every=50: the dataset has no 'validation' split" in proc.stderr
    assert "without periodic evaluation" in proc.stderr
    run_dir = _run_dir(tmp_path)
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 3
    assert (run_dir / "model" / "adapter_config.json").exists()
    for noise in NOISE:
        assert noise not in proc.stderr, noise
