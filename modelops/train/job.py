"""`FineTuningJob`: train in a separate process and watch it through the run directory's `job.json`."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from modelops.errors import ConfigError, JobError
from modelops.train.config import TrainConfig
from modelops.train.record import FINAL, JobRecord, read_job

SPEC_FILE = "job_spec.json"


def _new_run_dir(root: str | Path = "outputs/jobs") -> Path:
    # Seconds plus random bits: two jobs started in the same second still get their own directory.
    return Path(root) / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{secrets.token_hex(3)}"


def _model_node(model: Any, dataset=None) -> dict[str, Any]:
    """The config node for a model reference: a `conf/model` option's YAML, else a plain ModelSpec.

    A plain reference (alias, path, hub id) gets its task from the data: a classifier for
    classification rows, a causal LM for text, completion, instruction and chat rows.
    """
    if isinstance(model, dict):
        return dict(model)
    from modelops.config.paths import conf_dir

    option = conf_dir() / "model" / f"{model}.yaml"
    if option.is_file():
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(option))
    fmt = getattr(dataset, "format", "classification")
    task = "seq_cls" if fmt == "classification" else "causal_lm"
    return {"_target_": "modelops.models.spec.ModelSpec", "name_or_path": str(model), "task": task}


def _tracking_node(tracking: str | dict) -> dict[str, Any]:
    """The `tracking` node with its store URI fixed now (this process's env and cwd), checked at once."""
    from omegaconf import OmegaConf

    from modelops.config.build import instantiate
    from modelops.config.paths import conf_dir
    from modelops.registry.settings import store_uri
    from modelops.registry.store import check_store

    if isinstance(tracking, dict):
        node = dict(tracking)
    else:
        options = sorted(p.stem for p in (conf_dir() / "tracking").glob("*.yaml"))
        if tracking not in options:
            raise ConfigError(f"FineTuningJob: tracking={tracking!r} is not one of {options}")
        node = OmegaConf.to_container(OmegaConf.load(conf_dir() / "tracking" / f"{tracking}.yaml"))
    settings = instantiate(node, "tracking")
    if settings.enabled:
        node["uri"] = store_uri(settings.uri)
        check_store(node["uri"])  # an unreachable server fails here, not later in the training process
    return node


def _trainer_node(options: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"FineTuningJob: unknown trainer option(s) {unknown}; known: {sorted(known)}")
    TrainConfig(**{k: v for k, v in options.items() if k != "optimizer"})  # impossible values fail here, at once
    return {"_target_": "modelops.train.config.TrainConfig", **options}


class FineTuningJob:
    """A fine-tuning run in its own process, observable from anywhere through its run directory.

    Args:
        model: a `conf/model` option name (`minilm_cls`, `tiny_llama`), a packaged alias, a local
            directory, a hub id, or a config node (dict with `_target_`). The task (classifier or
            causal LM) comes from the option, else from the dataset's format.
        dataset: a `modelops.Dataset` with a `train` split.
        epochs: passes over the training data.
        learning_rate: peak learning rate.
        output_dir: the run directory (default `outputs/jobs/<time>_<random>`).
        num_processes: training processes, started through `accelerate launch` (one per GPU; on a
            machine without GPUs, CPU processes over gloo). `batch_size` is per process.
        tracking: a `conf/tracking` option (`mlflow`, `none`) or its node: where the job's run is
            recorded; a successful job registers its model.
        registry_name: the registered model the job's model becomes the next version of (default:
            the experiment's name).
        **trainer_options: any other `TrainConfig` field (`batch_size`, `seed`, ...).
    """

    def __init__(self, model: Any = "minilm_cls", dataset=None, epochs: int = 3, learning_rate: float = 5e-5,
                 output_dir: str | Path | None = None, num_processes: int = 1, tracking: str | dict = "mlflow",
                 registry_name: str | None = None, **trainer_options: Any):  # fmt: skip
        if num_processes < 1:
            raise ConfigError(f"FineTuningJob: num_processes must be >= 1, got {num_processes}")
        self.tracking_node = _tracking_node(tracking)
        self.registry_node = {"_target_": "modelops.registry.settings.RegistryConfig", "name": registry_name}
        self.model_node = _model_node(model, dataset)
        self.trainer_node = _trainer_node({"epochs": epochs, "learning_rate": learning_rate, **trainer_options})
        self.dataset = dataset
        self.run_dir = Path(output_dir) if output_dir else _new_run_dir()
        self.num_processes = num_processes
        self._process: subprocess.Popen | None = None

    @classmethod
    def from_config(cls, cfg, output_dir: str | Path | None = None) -> FineTuningJob:
        """A job from a composed config (its dataset, sanitizer if staged, model and trainer groups)."""
        from omegaconf import OmegaConf

        from modelops.config.build import instantiate
        from modelops.config.validate import validate

        validate(cfg)
        dataset = instantiate(cfg.dataset, "dataset")
        if "sanitize" in cfg.stages:
            dataset = instantiate(cfg.sanitizer, "sanitizer").sanitize(dataset)
        job = cls(model=OmegaConf.to_container(cfg.model), dataset=dataset, output_dir=output_dir,
                  tracking=OmegaConf.to_container(cfg.tracking), registry_name=cfg.registry.name)  # fmt: skip
        job.trainer_node = OmegaConf.to_container(cfg.trainer)
        return job

    @classmethod
    def attach(cls, run_dir: str | Path) -> FineTuningJob:
        """Watch a job started elsewhere (another process, an earlier session) by its run directory."""
        run_dir = Path(run_dir)
        if not (run_dir / "job.json").is_file():
            raise JobError(f"{run_dir}: not a run directory (no job.json)")
        spec = json.loads((run_dir / SPEC_FILE).read_text()) if (run_dir / SPEC_FILE).exists() else {}
        job = cls.__new__(cls)
        job.model_node, job.trainer_node = spec.get("model", {}), spec.get("trainer", {})
        job.dataset, job.run_dir, job._process, job.num_processes = None, run_dir, None, 1
        return job

    # -- control ------------------------------------------------------------------------------

    def start(self) -> FineTuningJob:
        """Write the job's inputs to its run directory and start training in a new process; returns at once."""
        if self._process is not None or (self.run_dir / "job.json").exists():
            raise JobError(f"job in {self.run_dir} was already started")
        if self.dataset is None:
            raise JobError("FineTuningJob needs a dataset to start")
        from modelops.io import write_json

        try:
            JobRecord(self.run_dir / "job.json").update(status="queued")
            self.dataset.save_to_disk(self.run_dir / "data" / "input")
            nodes = {"model": self.model_node, "trainer": self.trainer_node, "tracking": self.tracking_node,
                     "registry": self.registry_node}  # fmt: skip
            write_json(self.run_dir / SPEC_FILE, nodes)
        except OSError as exc:
            raise JobError(f"{self.run_dir}: cannot write the run directory ({exc.strerror or exc})") from None
        # The child imports modelops from where this process did, installed or not.
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        log = open(self.run_dir / "train.log", "ab")  # noqa: SIM115 - the child process owns it from here
        self._process = subprocess.Popen(
            self._command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        log.close()
        return self

    def _command(self) -> list[str]:
        worker = ["-m", "modelops.train.worker", str(self.run_dir)]
        if self.num_processes == 1:
            return [sys.executable, *worker]
        # --multi_gpu starts num_processes processes; with no GPU they run on the CPU over gloo.
        launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(self.num_processes),
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
        return [sys.executable, *launch, *worker]

    def cancel(self) -> None:
        """Ask the training process to stop (SIGTERM): it finishes its step, writes a checkpoint and
        ends with status `cancelled`. Running the worker again on the run directory resumes it."""
        status = self.status
        if status in FINAL:
            raise JobError(f"job in {self.run_dir} already ended ({status}); nothing to cancel")
        pid = self._read().get("pid") or (self._process.pid if self._process else None)
        if pid:
            os.kill(pid, signal.SIGTERM)

    def wait(self, timeout: float | None = None, poll: float = 0.5) -> str:
        """Block until the job ends or `timeout` seconds pass; return the status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.status not in FINAL:
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(poll)
        return self.status

    def preview(self, n: int = 3) -> str:
        """The first `n` training examples as tokenised for this job, with the tokens that carry loss marked."""
        from modelops.config.build import instantiate
        from modelops.train.data import preview_text

        if self.dataset is None:
            raise JobError("FineTuningJob.preview needs the job's dataset")
        spec = instantiate(self.model_node, "model")
        config = instantiate(self.trainer_node, "trainer")
        return preview_text(self.dataset, spec, config, n)

    # -- observation --------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        path = self.run_dir / "job.json"
        return read_job(path) if path.exists() else {"status": "queued", "progress": 0.0, "events": []}

    @property
    def status(self) -> str:
        """`queued`, `validating`, `running`, `succeeded`, `failed` or `cancelled`."""
        status = self._read()["status"]
        # A process that died without writing a final status (killed, crashed) has failed.
        if status not in FINAL and self._process is not None and self._process.poll() is not None:
            time.sleep(0.1)
            status = self._read()["status"]
            if status not in FINAL:
                error = f"training process exited with code {self._process.returncode} (see train.log)"
                try:
                    JobRecord(self.run_dir / "job.json").update(status="failed", error=error)
                except OSError:  # the run directory cannot be written (a full disk): still report it
                    self._crash = error
                return "failed"
        return status

    @property
    def progress(self) -> float:
        """0.0 .. 1.0; never decreases."""
        return float(self._read().get("progress", 0.0))

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self._read().get("events", []))

    @property
    def error(self) -> str | None:
        return self._read().get("error") or getattr(self, "_crash", None)

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self._read().get("metrics", {}))

    @property
    def fine_tuned_model(self) -> Path:
        """The saved model directory, accepted by `Evaluator` and by plain transformers/peft."""
        status = self.status
        if status != "succeeded":
            raise JobError(f"job in {self.run_dir} has no fine-tuned model: status is {status}")
        return self.run_dir / "model"

    def __repr__(self) -> str:
        return f"FineTuningJob(run_dir={str(self.run_dir)!r}, status={self.status!r})"
