"""One set of defaults: the Python API trains and scores as the CLI does; the YAML spells out the Python defaults."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
from omegaconf import OmegaConf

from modelops.config.build import compose, instantiate
from modelops.config.paths import conf_dir


def _yaml(group: str) -> dict:
    node = OmegaConf.to_container(OmegaConf.load(conf_dir() / group / "default.yaml"))
    return {k: v for k, v in node.items() if not k.startswith("_")}


def test_train_config_defaults_are_the_yaml_values():
    from modelops.train.config import TrainConfig

    yaml = _yaml("trainer")
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert set(fields) == set(yaml)
    # The optimizer is the one field whose default is spelled differently: null is AdamW with torch's
    # own defaults, which the YAML node spells out (checked below).
    assert {k: v for k, v in fields.items() if k != "optimizer"} == {k: v for k, v in yaml.items() if k != "optimizer"}
    assert (fields["weight_decay"], fields["warmup_ratio"], fields["checkpoint_every"]) == (0.01, 0.1, 500)


def test_yaml_optimizer_is_adamw_with_torchs_defaults():
    import torch

    node = _yaml("trainer")["optimizer"]
    assert node.pop("_target_") == "torch.optim.AdamW" and node.pop("_partial_") is True
    defaults = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]).defaults
    assert all(tuple(v) == defaults[k] if isinstance(v, list) else v == defaults[k] for k, v in node.items())


def test_evaluator_defaults_are_the_yaml_values():
    from modelops.evaluate.evaluator import Evaluator

    yaml = _yaml("evaluator")
    signature = {name: p.default for name, p in inspect.signature(Evaluator).parameters.items() if name != "device"}
    assert set(signature) == set(yaml)
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in signature.items()} == yaml
    built = instantiate(compose([]).evaluator, "evaluator")
    assert vars(built) == vars(Evaluator())
    assert Evaluator().batch_size == 64


@pytest.mark.parametrize("group", ["trainer", "evaluator"])
def test_every_key_of_every_option_is_a_parameter_of_its_target(group):
    """The YAML only spells out or overrides: each key of each option names a field/argument of its target."""
    from hydra.utils import get_class

    for path in sorted((conf_dir() / group).glob("*.yaml")):
        node = OmegaConf.to_container(compose([f"{group}={path.stem}"])[group])
        target = get_class(node["_target_"])
        if dataclasses.is_dataclass(target):
            accepted = {f.name for f in dataclasses.fields(target)}
        else:
            accepted = set(inspect.signature(target).parameters)
        keys = {k for k in node if not (k.startswith("_") and k.endswith("_"))}
        assert keys <= accepted, f"conf/{group}/{path.name}: {sorted(keys - accepted)} are not parameters of {target}"


def test_evaluator_options_extend_the_default():
    # lm and generative state only what differs; every other key is the default's.
    default = OmegaConf.to_container(compose([]).evaluator)
    for option, differs in {"lm": {"metrics", "batch_size"}, "generative": {"metrics", "batch_size"}}.items():
        node = OmegaConf.to_container(compose([f"evaluator={option}"]).evaluator)
        assert set(node) == set(default)
        assert {k for k in node if node[k] != default[k]} == differs


def test_job_trainer_node_is_the_cli_trainer_node():
    from modelops.train.job import FineTuningJob

    job = FineTuningJob(model="tiny_llama", epochs=2, batch_size=4)
    cli = OmegaConf.to_container(compose(["model=tiny_llama", "trainer.epochs=2", "trainer.batch_size=4"]).trainer)
    assert job.trainer_node == cli
    built, composed = (dataclasses.replace(instantiate(n, "trainer"), optimizer=None) for n in (job.trainer_node, cli))
    assert built == composed and built.weight_decay == 0.01
    assert job.model_node == OmegaConf.to_container(compose(["model=tiny_llama"]).model)


def _text_file(tmp_path):
    from modelops.data.demo_formats import text_demo

    path = tmp_path / "train.jsonl"
    text_demo(n=80, seed=1, validation=0, test=0)["train"].to_json(str(path), lines=True)
    return path


def _weights(model_dir):
    from safetensors.torch import load_file

    files = sorted(model_dir.glob("*.safetensors"))
    assert files, f"no safetensors in {model_dir}"
    return {name: tensor for f in files for name, tensor in load_file(f).items()}


@pytest.mark.slow
def test_api_job_and_cli_run_train_the_same_weights(tmp_path):
    """`FineTuningJob(model=..., dataset=...)` and the CLI's config, same data and values: identical weights."""
    import torch

    from modelops.data.dataset import Dataset
    from modelops.run import run
    from modelops.train.job import FineTuningJob

    path = _text_file(tmp_path)
    values = {"max_steps": 10, "batch_size": 4, "learning_rate": 1e-3, "cache_dir": str(tmp_path / "cache")}
    cfg = compose(["model=tiny_llama", "dataset=files", f"dataset.train={path}", "stages=[train]"]
                  + [f"trainer.{k}={v}" for k, v in values.items()])  # fmt: skip
    run(cfg, tmp_path / "cli")

    def api(**extra):
        out = tmp_path / f"api{len(extra)}"
        job = FineTuningJob(model="tiny_llama", dataset=Dataset.from_jsonl(path), output_dir=out, **values, **extra)
        job.start()
        assert job.wait(timeout=300) == "succeeded", job.error
        return _weights(job.fine_tuned_model)

    cli, same = _weights(tmp_path / "cli" / "model"), api()
    assert cli.keys() == same.keys()
    assert all(torch.equal(cli[name], same[name]) for name in cli)
    # The comparison can fail: without the YAML's weight decay and warmup the weights differ.
    other = api(weight_decay=0.0, warmup_ratio=0.0)
    assert not all(torch.equal(cli[name], other[name]) for name in cli)
