"""The Python API snippet of DESIGN.md, run as written against real JSONL files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from modelops.data.demo_sentiment import sentiment
from modelops.errors import ConfigError, JobError


@pytest.fixture
def jsonl_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = sentiment(n_train=320, n_validation=0, n_test=128, seed=3)
    data["train"].to_json("training_data.jsonl", lines=True)
    data["test"].to_json("test.jsonl", lines=True)
    return tmp_path


@pytest.mark.slow
def test_design_snippet_runs_as_written(jsonl_files):
    from modelops import Dataset, DatasetSanitizer, Evaluator, FineTuningJob

    dataset = Dataset.from_jsonl("training_data.jsonl")
    clean = DatasetSanitizer().sanitize(dataset)
    clean.save("clean_data.jsonl")

    job = FineTuningJob(model="minilm_cls", dataset=clean, epochs=1, learning_rate=2e-3, batch_size=16, log_every=2)
    started = time.monotonic()
    job.start()  # returns at once
    assert time.monotonic() - started < 5
    statuses, progress = [], []
    while job.status in ("queued", "validating", "running"):
        statuses.append(job.status)
        progress.append(job.progress)
        time.sleep(0.2)
    assert job.status == "succeeded", job.error
    results = Evaluator().evaluate(
        model=job.fine_tuned_model, dataset=Dataset.from_jsonl("test.jsonl"), metrics=["accuracy", "f1"]
    )
    assert results.accuracy >= 0.85

    # queued -> (validating) -> running -> succeeded, progress never goes back and ends at 1.0.
    order = ["queued", "validating", "running"]
    seen = [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]
    assert seen == sorted(seen, key=order.index) and "running" in seen
    assert progress == sorted(progress) and job.progress == 1.0
    assert any(0 < p < 1 for p in progress)
    assert any(e["message"] == "model saved" for e in job.events)
    assert job.metrics["steps"] == 20

    # Dataset.save wrote what was sanitised, row for row.
    saved = [json.loads(line) for line in Path("clean_data.jsonl").read_text().splitlines()]
    assert len(saved) == len(clean["train"]) < len(dataset["train"])

    # A second watcher attaches by run directory and sees the same job.
    watcher = FineTuningJob.attach(job.run_dir)
    assert watcher.status == "succeeded" and watcher.fine_tuned_model == job.fine_tuned_model
    with pytest.raises(JobError, match="already ended"):
        watcher.cancel()
    with pytest.raises(JobError, match="already started"):
        job.start()


def test_failed_job_reports_its_error(jsonl_files):
    from modelops import Dataset, FineTuningJob

    job = FineTuningJob(model="no/such-model-here", dataset=Dataset.from_jsonl("training_data.jsonl"), epochs=1)
    job.start()
    assert job.wait(timeout=120) == "failed"
    assert "no/such-model-here" in job.error


def test_cancel_stops_a_running_job(jsonl_files):
    from modelops import Dataset, FineTuningJob

    job = FineTuningJob(model="minilm_cls", dataset=Dataset.from_jsonl("training_data.jsonl"), epochs=50)
    job.start()
    deadline = time.monotonic() + 120
    while job.status != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    job.cancel()
    assert job.wait(timeout=60) == "cancelled"


def test_bad_trainer_options_fail_at_once(jsonl_files):
    from modelops import FineTuningJob

    with pytest.raises(ConfigError, match="batch_sise"):
        FineTuningJob(model="minilm_cls", epochs=1, batch_sise=8)
    with pytest.raises(ConfigError, match=r"trainer\.epochs"):
        FineTuningJob(model="minilm_cls", epochs=0)


def test_attach_to_a_directory_that_is_not_a_run(tmp_path):
    from modelops import FineTuningJob

    with pytest.raises(JobError, match="not a run directory"):
        FineTuningJob.attach(tmp_path)


def test_preview_shows_which_tokens_carry_loss():
    from modelops import FineTuningJob
    from modelops.data.demo_formats import chat_demo

    job = FineTuningJob(model="tiny_llama", dataset=chat_demo(n=20), epochs=1)
    text = job.preview(2)
    assert text.count("--- example") == 2
    # Only assistant answers (each ending in EOS) are inside the loss markers, never a user turn.
    spans = [part.split("]]")[0] for part in text.split("[[")[1:]]
    assert spans and all(span.endswith("</s>") and "<|user|>" not in span for span in spans)


def _readme_python_api_snippet() -> str:
    page = (Path(__file__).resolve().parents[1] / "docs" / "python-api.md").read_text()  # moved from the README
    return page.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_readme_python_api_snippet_runs_verbatim(jsonl_files, capsys):
    snippet = _readme_python_api_snippet()
    assert "while not job.done:" in snippet and "job.start()" in snippet
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # the snippet exactly as the README prints it
    job, results = namespace["job"], namespace["results"]
    assert job.status == "succeeded", job.error
    assert results.accuracy >= 0.85
    lines = capsys.readouterr().out.splitlines()
    progress = [
        float(line.split(": ")[1].rstrip("%")) for line in lines if line.startswith(("queued", "validating", "running"))
    ]
    assert progress and progress == sorted(progress)  # it printed while the job ran, and progress never went back
    assert any(line.startswith("running: ") for line in lines)
    assert lines[-1] == f"Accuracy: {results.accuracy:.2%}"


def test_a_loop_on_status_running_still_gets_the_fine_tuned_model(jsonl_files):
    """DESIGN.md's loop (`while job.status == "running"`) may end before training does; the model still comes."""
    from modelops import FineTuningJob
    from modelops.data.demo_formats import text_demo

    job = FineTuningJob(model="tiny_llama", dataset=text_demo(n=24, validation=0, test=0), max_steps=3, batch_size=4)
    job.start()
    assert not job.done
    while job.status == "running":
        time.sleep(0.1)
    model_dir = job.fine_tuned_model  # waits for the end
    assert job.done and not job.running and job.status == "succeeded"
    assert (model_dir / "modelops.json").exists()


def test_fine_tuned_model_of_a_job_not_started_is_an_error():
    from modelops import FineTuningJob

    with pytest.raises(JobError, match="not started"):
        _ = FineTuningJob(model="tiny_llama").fine_tuned_model


def test_cancel_right_after_start_ends_cancelled(jsonl_files):
    from modelops import Dataset, FineTuningJob

    job = FineTuningJob(model="minilm_cls", dataset=Dataset.from_jsonl("training_data.jsonl"), epochs=1)
    job.start()
    job.cancel()
    assert job.wait(timeout=60) == "cancelled", job.error
    assert job.done and "cancelled" in job.error
    # Read back from job.json by another watcher, not only from this object.
    assert FineTuningJob.attach(job.run_dir).status == "cancelled"
    with pytest.raises(JobError, match="no fine-tuned model: status is cancelled"):
        _ = job.fine_tuned_model


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-3-haiku", "./models/not-here"])
def test_a_model_that_is_not_loadable_fails_in_the_constructor(jsonl_files, model):
    from modelops import Dataset, FineTuningJob
    from modelops.errors import ModelError

    dataset = Dataset.from_jsonl("training_data.jsonl")
    with pytest.raises(ModelError) as info:
        FineTuningJob(model=model, dataset=dataset)
    message = str(info.value)
    assert repr(model) in message and "Hosted API models" in message and "not supported" in message
    for accepted in ("minilm", "tiny-llama", "minilm_cls", "tiny_llama", "local directory", "hub id"):
        assert accepted in message
    assert not (jsonl_files / "outputs").exists()  # nothing was started or written


def test_model_references_that_may_load_pass_the_constructor(jsonl_files, tmp_path):
    from modelops import FineTuningJob
    from modelops.errors import ModelError
    from modelops.models.resolve import resolve_name_or_path

    for ref in ("minilm", "minilm_cls", "tiny-llama", "some-org/some-model", resolve_name_or_path("minilm")):
        assert FineTuningJob(model=ref).model_node["name_or_path"]
    with pytest.raises(ModelError, match=r"no config\.json"):
        FineTuningJob(model=str(tmp_path))  # a directory, but no model in it
