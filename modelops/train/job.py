"""`FineTuningJob`: train in a separate process and watch it through the run directory's `job.json`."""

from __future__ import annotations

import dataclasses
import functools
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
from modelops.rundir import claim, config_key, move_aside
from modelops.train.config import TrainConfig
from modelops.train.record import FINAL, JobRecord, read_job

SPEC_FILE = "job_spec.json"  # what modelops.run.run_job reads
PIPELINE = "modelops.run"  # the module the job's process runs: the same pipeline as the CLI


def _new_run_dir(root: str | Path = "outputs/jobs") -> Path:
    # Seconds plus random bits: two jobs started in the same second still get their own directory.
    return Path(root) / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{secrets.token_hex(3)}"


def _model_node(model: Any, dataset=None) -> dict[str, Any]:
    """The config node for a model reference: a `conf/model` option's YAML, else a plain ModelSpec.

    A plain reference (alias, path, hub id) gets its task from the data: a classifier for
    classification rows, a causal LM for text, completion, instruction and chat rows.

    Raises:
        ModelError: for a reference that names no model (checked here, so a job never starts on it).
    """
    from modelops.models.resolve import model_option, reference_kind

    node = dict(model) if isinstance(model, dict) else model_option(str(model))
    if node is None:
        fmt = getattr(dataset, "format", "classification")
        task = "seq_cls" if fmt == "classification" else "causal_lm"
        node = {"_target_": "modelops.models.spec.ModelSpec", "name_or_path": str(model), "task": task}
    if isinstance(node.get("name_or_path"), str):
        reference_kind(node["name_or_path"])
    return node


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


def _reward_node(fn: Any, index: int) -> dict[str, Any]:
    """A reward function given in Python as the `_partial_` node the job's process makes it from again."""
    if isinstance(fn, dict):
        return fn
    keywords: dict[str, Any] = {}
    while isinstance(fn, functools.partial):
        if fn.args:
            raise ConfigError(f"trainer.rewards.{index}: give a partial's arguments by keyword, not position")
        keywords, fn = {**fn.keywords, **keywords}, fn.func
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not callable(fn) or not module or module == "__main__" or "<" in name:
        raise ConfigError(
            f"trainer.rewards.{index}: {fn!r} cannot be imported by the job's own process; define the reward "
            "function at the top level of an importable module (not __main__, a lambda or a nested function)"
        )
    return {"_target_": f"{module}.{name}", "_partial_": True, **keywords}


def _trainer_node(options: dict[str, Any]) -> dict[str, Any]:
    """`conf/trainer/default.yaml` with `options` over it: the node the CLI's `trainer=default` composes.

    Reward functions given as Python callables become `_partial_` nodes (the job's process imports them).
    """
    from modelops.config.options import conf_node

    if options.get("rewards"):
        options = {**options, "rewards": [_reward_node(fn, i) for i, fn in enumerate(options["rewards"])]}

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"FineTuningJob: unknown trainer option(s) {unknown}; known: {sorted(known)}")
    TrainConfig(**{k: v for k, v in options.items() if k != "optimizer"})  # impossible values fail here, at once
    return {**conf_node("trainer", "default"), **options}


class FineTuningJob:
    """A fine-tuning run in its own process, observable from anywhere through its run directory.

    Args:
        model: a `conf/model` option name (`minilm_cls`, `tiny_llama`), a packaged alias, a local
            directory, a hub id, or a config node (dict with `_target_`). The task (classifier or
            causal LM) comes from the option, else from the dataset's format.
        dataset: a `modelops.Dataset` with a `train` split.
        epochs: passes over the training data (default: `conf/trainer/default.yaml`'s).
        learning_rate: peak learning rate (default: `conf/trainer/default.yaml`'s).
        output_dir: the run directory (default `outputs/jobs/<time>_<random>`).
        num_processes: training processes, started through `accelerate launch` (one per GPU; on a
            machine without GPUs, CPU processes over gloo). `batch_size` is per process.
        **trainer_options: any other `TrainConfig` field (`batch_size`, `seed`, ...). Every option not
            given is the one `conf/trainer/default.yaml` sets, so a job trains as the CLI does.
        tracking: a `conf/tracking` option (`mlflow`, `none`) or its node: where the job's run is
            recorded; a successful job registers its model.
        registry_name: the registered model the job's model becomes the next version of (default:
            the experiment's name).
        overwrite: when `output_dir` holds another job, rename it to ``<output_dir>.old-<time>`` (never
            deleted) and start this one; by default `start()` refuses such a directory.

    Raises:
        ConfigError: an unknown or impossible trainer option.
        ModelError: a model reference that names nothing modelops can load (a hosted API model such as
            `gpt-4o-mini`, a missing directory); the message lists what is accepted.
    """

    def __init__(self, model: Any = "minilm_cls", dataset=None, epochs: int | None = None,
                 learning_rate: float | None = None, output_dir: str | Path | None = None, num_processes: int = 1,
                 tracking: str | dict = "mlflow", registry_name: str | None = None, overwrite: bool = False,
                 **trainer_options: Any):  # fmt: skip
        if num_processes < 1:
            raise ConfigError(f"FineTuningJob: num_processes must be >= 1, got {num_processes}")
        named = {"epochs": epochs, "learning_rate": learning_rate}
        self.tracking_node = _tracking_node(tracking)
        self.registry_node = {"_target_": "modelops.registry.settings.RegistryConfig", "name": registry_name}
        self.model_node = _model_node(model, dataset)
        self.trainer_node = _trainer_node({**{k: v for k, v in named.items() if v is not None}, **trainer_options})
        # Reward functions handed over as Python objects are trusted: their modules may be imported by the job.
        self.allowed_targets = sorted({node["_target_"] for node in self.trainer_node.get("rewards") or []
                                       if not node["_target_"].startswith("modelops.")})  # fmt: skip
        self.dataset = dataset
        self.run_dir = Path(output_dir) if output_dir else _new_run_dir()
        self.num_processes = num_processes
        self.overwrite = overwrite
        self._process: subprocess.Popen | None = None
        self._cancelled = False  # cancel() was called: a worker killed before it could say so was cancelled
        self._crash: str | None = None  # an exit that could not be written to job.json

    @classmethod
    def from_config(cls, cfg, output_dir: str | Path | None = None) -> FineTuningJob:
        """A job from a composed config (its dataset, sanitizer if staged, model and trainer groups)."""
        from omegaconf import OmegaConf

        from modelops.config.build import instantiate
        from modelops.config.validate import validate

        validate(cfg)
        dataset = instantiate(cfg.dataset, "dataset", cfg.allowed_targets)
        if "sanitize" in cfg.stages:
            dataset = instantiate(cfg.sanitizer, "sanitizer", cfg.allowed_targets).sanitize(dataset)
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
        job.overwrite = False
        job._cancelled, job._crash = False, None
        return job

    # -- control ------------------------------------------------------------------------------

    def start(self) -> FineTuningJob:
        """Write the job's inputs to its run directory and start training in a new process; returns at once.

        The status stays `queued` until the new process takes the job (`validating`, then `running`), so
        watch it with ``while not job.done:`` (or `wait()`), not with ``while job.status == "running":``.
        """
        if self._process is not None:
            raise JobError(f"job in {self.run_dir} was already started")
        if self.dataset is None:
            raise JobError("FineTuningJob needs a dataset to start")
        from modelops.io import write_json

        key = self._claim()
        try:
            JobRecord(self.run_dir / "job.json").update(status="queued", config_key=key)
            self.dataset.save_to_disk(self.run_dir / "data" / "input")
            write_json(self.run_dir / SPEC_FILE, self._config())
        except OSError as exc:
            raise JobError(f"{self.run_dir}: cannot write the run directory ({exc.strerror or exc})") from exc
        # The child imports modelops from where this process did, installed or not.
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        log = open(self.run_dir / "train.log", "ab")  # noqa: SIM115 - the child process owns it from here
        self._process = subprocess.Popen(
            self._command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        log.close()
        return self

    def _config(self) -> dict[str, Any]:
        """The config the pipeline runs: the dataset saved in the run directory, trained, tracked."""
        dataset = {"_target_": "modelops.data.dataset.Dataset.load_from_disk",
                   "path": str((self.run_dir / "data" / "input").resolve())}  # fmt: skip
        return {"dataset": dataset, "model": self.model_node, "trainer": self.trainer_node,
                "tracking": self.tracking_node, "registry": self.registry_node, "stages": ["train"],
                "allowed_targets": getattr(self, "allowed_targets", [])}  # fmt: skip

    def _claim(self) -> str:
        """Refuse a run directory that holds a job (another one, or this one already started); see `overwrite`."""
        key = config_key(self._config())  # as the pipeline computes it from job_spec.json: a resume is the same run
        resume = (f"attach to it with FineTuningJob.attach({str(self.run_dir)!r}), or resume it with "
                  f"`python -m {PIPELINE} {self.run_dir}`")  # fmt: skip
        try:
            found = claim(self.run_dir, key, overwrite=self.overwrite, override="overwrite=True", resume_hint=resume)
        except ConfigError as exc:
            raise JobError(str(exc)) from exc
        if found.resumed and not self.overwrite:
            raise JobError(f"job in {self.run_dir} was already started: {resume}, or pass overwrite=True")
        if found.resumed:
            move_aside(self.run_dir)
        return key

    def _command(self) -> list[str]:
        worker = ["-m", PIPELINE, str(self.run_dir)]
        if self.num_processes == 1:
            return [sys.executable, *worker]
        # --multi_gpu starts num_processes processes; with no GPU they run on the CPU over gloo.
        launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(self.num_processes),
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
        return [sys.executable, *launch, *worker]

    def cancel(self) -> None:
        """Ask the training process to stop (SIGTERM): it finishes its step, writes a checkpoint and
        ends with status `cancelled`. Running the worker again on the run directory resumes it.

        A job cancelled before its worker took it over (right after `start()`) ends `cancelled` too.
        """
        status = self.status
        if status in FINAL:
            raise JobError(f"job in {self.run_dir} already ended ({status}); nothing to cancel")
        pid = self._read().get("pid") or (self._process.pid if self._process else None)
        if pid:
            self._cancelled = True
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
        # A process that ended without writing a final status was killed before its signal handlers were in
        # place (a cancel right after start) or died (killed, crashed): it was cancelled or it failed.
        if status not in FINAL and self._process is not None and self._process.poll() is not None:
            time.sleep(0.1)
            status = self._read()["status"]
            if status not in FINAL:
                status = self._record_exit()
        return status

    def _record_exit(self) -> str:
        code = self._process.returncode
        if self._cancelled:
            status, error = "cancelled", "cancelled before training started"
        else:
            status, error = "failed", f"training process exited with code {code} (see train.log)"
        try:
            JobRecord(self.run_dir / "job.json").update(status=status, error=error)
        except OSError:  # the run directory cannot be written (a full disk): still report it
            self._crash = error
        return status

    @property
    def done(self) -> bool:
        """Whether the job has ended: `succeeded`, `failed` or `cancelled`."""
        return self.status in FINAL

    @property
    def running(self) -> bool:
        """Whether the training process is working on the job (status `validating` or `running`)."""
        return self.status in ("validating", "running")

    @property
    def progress(self) -> float:
        """0.0 .. 1.0; never decreases."""
        return float(self._read().get("progress", 0.0))

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self._read().get("events", []))

    @property
    def error(self) -> str | None:
        return self._read().get("error") or self._crash

    @property
    def metrics(self) -> dict[str, Any]:
        """The training's figures once it succeeded: `steps`, `final_loss`, `tokens_per_s`, `model_dir`."""
        return dict(self._read().get("metrics", {}).get("train", {}))

    @property
    def fine_tuned_model(self) -> Path:
        """The saved model directory, accepted by `Evaluator` and by plain transformers/peft.

        On a job that has not ended yet this waits for it, as `wait()` does.

        Raises:
            JobError: the job was never started, or it ended without a model (`failed`, `cancelled`).
        """
        if self._process is None and not (self.run_dir / "job.json").exists():
            raise JobError(f"job in {self.run_dir} was not started: call job.start() first")
        status = self.wait()
        if status != "succeeded":
            error = f": {self.error}" if self.error else ""
            raise JobError(f"job in {self.run_dir} has no fine-tuned model: status is {status}{error}")
        return self.run_dir / "model"

    def __repr__(self) -> str:
        return f"FineTuningJob(run_dir={str(self.run_dir)!r}, status={self.status!r})"
