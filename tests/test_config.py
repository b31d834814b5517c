"""Every config option composes and instantiates from the real YAML; bad config names its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from modelops.config.build import compose, instantiate
from modelops.config.paths import conf_dir
from modelops.config.recipes import recipe_names
from modelops.config.validate import validate
from modelops.errors import ConfigError

GROUPS = ["dataset", "sanitizer", "model", "trainer", "evaluator"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((conf_dir() / g).glob("*.yaml"))]


def _required(group: str, option: str, tmp_path: Path) -> list[str]:
    """Values a user must supply (`???`) for some options, filled in with real files and models."""
    if (group, option) == ("model", "hf"):
        return ["model.name_or_path=tiny-llama"]
    if (group, option) != ("dataset", "files"):
        return []
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n')
    return [f"dataset.train={path}"]


def test_every_group_has_a_real_option():
    for group in GROUPS:
        assert any(g == group for g, _ in OPTIONS), f"conf/{group}/ has no option"


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_validates_and_instantiates(group, option, tmp_path):
    cfg = compose([f"{group}={option}", *_required(group, option, tmp_path)])
    validate(cfg)
    obj = instantiate(cfg[group], group)
    target = cfg[group]["_target_"]
    assert not isinstance(obj, dict), f"{group}={option} did not instantiate {target}"


@pytest.mark.parametrize("recipe", recipe_names())
def test_recipe_composes_and_overrides_apply(recipe):
    path = Path(conf_dir()).parent / "recipes" if (Path(conf_dir()).parent / "recipes").is_dir() else None
    text = (path / f"{recipe}.yaml").read_text() if path else ""
    assert text.startswith("# @package _global_"), "recipes are override-only configs"
    # lora_chat is meant for a model the user names; the tiny Llama stands in for it here.
    needs = ["model.name_or_path=tiny-llama"] if recipe == "lora_chat" else []
    cfg = compose([f"+recipe={recipe}", "trainer.seed=123", *needs])
    validate(cfg)
    assert cfg.trainer.seed == 123  # a command-line override after the recipe wins


def test_lora_small_recipe_values_reach_the_config():
    cfg = compose(["+recipe=lora_small"])
    recipe = OmegaConf.load(conf_dir().parent / "recipes" / "lora_small.yaml")
    assert cfg.trainer.learning_rate == recipe.trainer.learning_rate
    assert cfg.model.peft._target_ == "peft.LoraConfig"
    spec = instantiate(cfg.model, "model")
    from peft import LoraConfig

    assert isinstance(spec.peft, LoraConfig)


def test_trainer_optimizer_is_a_partial_of_torch_adamw():
    import torch

    trainer = instantiate(compose([]).trainer, "trainer")
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = trainer.optimizer([param], lr=0.1)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_adamw_runs_fused_on_a_cpu_unless_the_config_says_otherwise():
    import functools

    import torch

    from modelops.train.config import TrainConfig
    from modelops.train.loop import _setup_optimizer

    model = torch.nn.Linear(8, 8)
    optimizer, _ = _setup_optimizer(model, TrainConfig(warmup_steps=0), total_steps=10, device=torch.device("cpu"))
    assert optimizer.defaults["fused"] is True
    before = model.weight.detach().clone()
    model(torch.ones(2, 8)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, model.weight)
    unfused = TrainConfig(optimizer=functools.partial(torch.optim.AdamW, fused=False))
    optimizer, _ = _setup_optimizer(model, unfused, total_steps=10, device=torch.device("cpu"))
    assert not optimizer.defaults["fused"]


def _error(overrides: list[str]) -> str:
    cfg = compose(overrides)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
        for group in GROUPS:
            instantiate(cfg[group], group)
    return str(info.value)


def test_unknown_key_is_named_with_a_suggestion():
    message = _error(["+trainer.learnig_rate=0.1"])
    assert "trainer.learnig_rate" in message
    assert "learning_rate" in message


def test_unknown_top_level_key():
    assert "bogus" in _error(["+bogus=1"])


def test_wrong_type_is_named():
    message = _error(["trainer.epochs=three"])
    assert "trainer.epochs" in message and "int" in message


def test_impossible_values_are_named():
    assert "trainer.learning_rate" in _error(["trainer.learning_rate=-1"])
    assert "trainer.batch_size" in _error(["trainer.batch_size=0"])
    assert "model.peft.r" in _error(["model.peft.r=0"])


def test_unknown_stage():
    assert "stages" in _error(["stages=[sanitize,trian]"])


def test_library_target_bad_argument_names_key():
    assert "model.peft.not_an_arg" in _error(["+model.peft.not_an_arg=1"])


def test_target_outside_allowlist_fails_before_anything_runs():
    cfg = compose(["trainer._target_=os.system"])
    with pytest.raises(ConfigError, match=r"trainer\._target_.*outside the allowed prefixes"):
        validate(cfg)


def test_allowlist_can_be_extended_in_config():
    cfg = compose(["trainer._target_=collections.OrderedDict", "allowed_targets=[collections.]"])
    validate(cfg)


def test_dotted_metric_names_pass_the_allowlist():
    cfg = compose(["evaluator.metrics=[accuracy,os.system]"])
    with pytest.raises(ConfigError, match=r"evaluator\.metrics\.1.*outside the allowed prefixes"):
        validate(cfg)


def test_only_path_like_model_references_are_checked_before_loading(tmp_path):
    from modelops.config.validate import check_model_reference

    def cfg(ref):
        return OmegaConf.create({"model": {"name_or_path": ref}})

    # Aliases, hub ids and registry references are resolved when the model loads, not here.
    for ref in ("minilm", "tiny-llama", "org/model", "my-model", "my-model@champion", "my-model/3", "models:/m/3"):
        check_model_reference(cfg(ref))
    check_model_reference(cfg(str(tmp_path)))  # an existing directory
    for ref, what in ((str(tmp_path / "gone"), "no such local directory"), ("./gone", "no such local directory")):
        with pytest.raises(ConfigError, match=f"model.name_or_path: '{ref}': {what}"):
            check_model_reference(cfg(ref))
    (tmp_path / "weights.bin").write_text("")
    with pytest.raises(ConfigError, match=r"a file, not a model directory"):
        check_model_reference(cfg(str(tmp_path / "weights.bin")))
