"""The `_target_` check judges what a dotted name resolves to: escape routes through re-exported
modules of every allowed package are refused on every construction path, shipped configs pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from modelops.config.build import compose, instantiate
from modelops.config.paths import conf_dir, recipes_dir
from modelops.config.targets import DENIED, check_target, trusting
from modelops.config.validate import validate
from modelops.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

# Routes that exist in the pinned versions (each checked by hand with hydra's get_object):
# dotted name -> what it really is.
ESCAPES = {
    "torch.os.system": "posix.system",
    "torch.hub.os.system": "posix.system",
    "torch.serialization.os.remove": "posix.remove",
    "torch.serialization.pickle.loads": "_pickle.loads",
    "torch.hub.shutil.rmtree": "shutil.rmtree",
    "torch.package.package_importer.builtins.eval": "builtins.eval",
    "torch.package.package_importer.builtins.exec": "builtins.exec",
    "torch.sys.modules": "builtins.dict",
    "transformers.utils.import_utils.importlib.import_module": "importlib.import_module",
    "transformers.utils.import_utils.subprocess.run": "subprocess.run",
    "transformers.utils.hub.os.system": "posix.system",
    "datasets.load.importlib.import_module": "importlib.import_module",
    "datasets.utils.file_utils.os.system": "posix.system",
    "datasets.utils.file_utils.shutil.rmtree": "shutil.rmtree",
    "peft.utils.other.os.system": "posix.system",
    "peft.utils.save_and_load.os.remove": "posix.remove",
    "accelerate.utils.launch.subprocess.run": "subprocess.run",
    "accelerate.commands.launch.subprocess.Popen": "subprocess.Popen",
    "modelops.config.paths.Path.write_text": "pathlib.Path.write_text",
    "modelops.train.job.subprocess.Popen": "subprocess.Popen",
    "modelops.train.job.os.kill": "posix.kill",
}

# Entry points inside allowed packages that fetch or run code from elsewhere -> where they are defined.
DANGEROUS = {
    "torch.load": "torch.serialization.load",
    "torch.hub.torch.load": "torch.serialization.load",
    "torch.hub.load": "torch.hub.load",
    "torch.utils.model_zoo.load_url": "torch.hub.load_state_dict_from_url",
    "torch.utils.cpp_extension.load_inline": "torch.utils.cpp_extension.load_inline",
    "transformers.AutoModel.from_pretrained": "transformers.models.auto.modeling_auto.AutoModel.from_pretrained",
    "transformers.AutoModelForCausalLM.from_pretrained": "AutoModelForCausalLM.from_pretrained",
    "transformers.AutoTokenizer.from_pretrained": "transformers.models.auto.tokenization_auto.AutoTokenizer",
    "transformers.pipeline": "transformers.pipelines.pipeline",
    "transformers.dynamic_module_utils.get_class_from_dynamic_module": "get_class_from_dynamic_module",
    "datasets.load_dataset": "datasets.load.load_dataset",
}


def _refusal(name: str, key: str = "model.peft._target_", allowed=()) -> str:
    with pytest.raises(ConfigError) as info:
        check_target(key, name, allowed)
    return str(info.value)


@pytest.mark.parametrize("name", list(ESCAPES))
def test_re_exported_module_routes_are_refused(name):
    message = _refusal(name)
    assert message.startswith(f"model.peft._target_: {name!r} resolves to {ESCAPES[name]}, outside the allowed")


def test_at_least_fifteen_routes_through_every_allowed_package():
    assert len(ESCAPES) >= 15
    for package in ("torch", "transformers", "datasets", "peft", "accelerate", "modelops"):
        assert any(name.startswith(f"{package}.") for name in ESCAPES), package


@pytest.mark.parametrize("name", list(DANGEROUS))
def test_dangerous_entry_points_are_refused_unless_named_exactly(name):
    message = _refusal(name)
    assert f"{name!r} resolves to" in message and DANGEROUS[name] in message
    assert f"allowed_targets=[{name}]" in message
    assert check_target("model.peft._target_", name, [name]) is not None  # trusted by its exact name


def test_allowing_a_prefix_does_not_lift_the_denylist():
    assert "refused by default" in _refusal("torch.hub.load", allowed=["torch.hub"])


def test_modules_private_names_and_unknown_origins_are_refused():
    assert "is a module" in _refusal("torch.os")
    assert "is a module" in _refusal("torch.hub", allowed=["torch.hub"])
    assert "private" in _refusal("modelops.__builtins__")
    assert "private" in _refusal("torch.package.package_importer.builtins.__import__")
    # A C method says no __module__; it is judged by the class it is bound to, never passed for not saying.
    assert "resolves to builtins.dict.get, outside" in _refusal("torch.sys.modules.get")
    assert "resolves to builtins.dict.fromkeys, outside" in _refusal("torch.sys.modules.fromkeys")


def test_names_outside_the_prefixes_are_refused_before_anything_is_imported():
    message = _refusal("no_such_package_xyz.evil.run")
    assert "is outside the allowed prefixes" in message and "no_such_package_xyz" not in sys.modules
    assert "torchvision" in _refusal("torchvision.io.read_file")  # prefixes match whole components


@pytest.mark.parametrize(
    ("name", "defined_in"),
    [
        ("torch.optim.AdamW", "torch.optim.adamw"),
        ("peft.LoraConfig", "peft.tuners.lora.config"),
        ("datasets.Dataset.from_dict", "datasets.arrow_dataset"),
        ("datasets.Features", "datasets.features.features"),
        ("transformers.get_scheduler", "transformers.optimization"),
        ("torch.nn.functional.relu", "torch.nn.functional"),
    ],
)
def test_library_objects_defined_in_their_package_pass(name, defined_in):
    obj = check_target("k", name)
    assert obj.__module__ == defined_in


def _shipped_targets() -> list[str]:
    found = []
    for path in [*conf_dir().rglob("*.yaml"), *recipes_dir().glob("*.yaml")]:
        stack = [OmegaConf.to_container(OmegaConf.load(path))]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                if isinstance(item.get("_target_"), str) and not item["_target_"].startswith("hydra_plugins."):
                    found.append(item["_target_"])
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
    return sorted(set(found))


def test_every_shipped_target_passes():
    targets = _shipped_targets()
    assert "peft.LoraConfig" in targets and "torch.optim.AdamW" in targets
    for name in targets:
        check_target("k", name)


# -- every construction path ----------------------------------------------------------------------


def test_validate_refuses_a_group_target_and_names_the_key():
    with pytest.raises(ConfigError) as info:
        validate(compose(["model.peft._target_=torch.os.system"]))
    assert str(info.value).startswith("model.peft._target_: 'torch.os.system' resolves to posix.system, outside")


def test_validate_refuses_a_nested_optimizer_target():
    with pytest.raises(ConfigError, match=r"^trainer\.optimizer\._target_: 'torch\.load' resolves to torch\.serial"):
        validate(compose(["trainer.optimizer._target_=torch.load"]))


def test_validate_refuses_a_dotted_metric_name_and_a_metric_target():
    with pytest.raises(ConfigError, match=r"^evaluator\.metrics\.1: 'torch\.sys\.modules' resolves to builtins"):
        validate(compose(["evaluator.metrics=[accuracy,torch.sys.modules]"]))
    with pytest.raises(ConfigError, match=r"^evaluator\.metrics\.0\._target_: 'peft\.utils\.other\.os\.system'"):
        validate(compose(["evaluator.metrics=[{_target_:peft.utils.other.os.system}]"]))


def test_validate_refuses_a_sanitizer_step_target():
    overrides = ["sanitizer.steps=[{_target_:datasets.utils.file_utils.shutil.rmtree,path:/}]"]
    with pytest.raises(ConfigError, match=r"^sanitizer\.steps\.0\._target_: .* resolves to shutil\.rmtree"):
        validate(compose(overrides))


def test_sanitizer_registry_and_metric_resolver_use_the_same_check():
    from modelops.evaluate import Evaluator
    from modelops.sanitize import DatasetSanitizer

    with pytest.raises(ConfigError, match=r"^sanitizer\.steps\.1\._target_: .* resolves to subprocess\.run"):
        DatasetSanitizer(steps=["normalize", {"_target_": "transformers.utils.import_utils.subprocess.run"}])
    with pytest.raises(ConfigError, match=r"^metrics\.0\._target_: 'torch\.os\.system' resolves to posix\.system"):
        Evaluator(metrics=["torch.os.system"])
    with pytest.raises(ConfigError, match=r"^metrics\.0\._target_: 'datasets\.load_dataset' resolves to"):
        Evaluator(metrics=[{"_target_": "datasets.load_dataset", "path": "x"}])


def test_instantiate_checks_nodes_that_never_went_through_validate(tmp_path):
    marker = tmp_path / "written"
    node = {"_target_": "modelops.config.paths.Path.write_text", "self": str(marker), "data": "x"}
    with pytest.raises(ConfigError, match=r"^dataset\._target_: .* resolves to pathlib\.Path\.write_text"):
        instantiate(node, "dataset")
    assert not marker.exists()


def test_allowed_targets_trust_a_package_for_nested_construction_too():
    overrides = ["evaluator.metrics=[accuracy,{_target_:tests.test_evaluator.error_rate}]", "allowed_targets=[tests]"]
    cfg = compose(overrides)
    validate(cfg)
    evaluator = instantiate(cfg.evaluator, "evaluator", cfg.allowed_targets)
    assert [m.name for m in evaluator.metrics] == ["accuracy", "error_rate"]
    with trusting(["tests"]):
        assert check_target("k", "tests.test_evaluator.error_rate").__name__ == "error_rate"
    assert "outside" in _refusal("tests.test_evaluator.error_rate")  # the trust ends with the block


@pytest.mark.parametrize(
    ("value", "key"), [("mypkg", "allowed_targets"), ("[mypkg,'']", "allowed_targets.1"), ("[1]", "allowed_targets.0")]
)
def test_allowed_targets_must_be_a_list_of_names(value, key):
    with pytest.raises(ConfigError, match=rf"^{key}: expected"):
        validate(compose([f"allowed_targets={value}"]))


def test_library_target_keys_are_checked_against_its_signature():
    with pytest.raises(ConfigError, match=r"^trainer\.optimizer\.betaz: unknown key \(did you mean 'betas'\?\)"):
        validate(compose(["+trainer.optimizer.betaz=[0.9,0.99]"]))


def test_denied_entries_name_where_things_are_defined():
    # A library that moves an entry point would silently lift the denial: each entry must still exist.
    import importlib

    for where in DENIED:
        module, _, attr = where.rpartition(".")
        try:
            importlib.import_module(where)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module), attr), where


# -- the real CLI ---------------------------------------------------------------------------------


def _cli(args: list[str], cwd: Path, debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("MODELOPS_DEBUG", None)
    env.pop("HYDRA_FULL_ERROR", None)
    if debug:
        env["MODELOPS_DEBUG"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "modelops", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_refuses_an_escape_with_exit_2_before_anything_runs(tmp_path):
    marker = tmp_path / "pwned"
    proc = _cli(["model.peft._target_=torch.os.system", f"+model.peft.command='touch {marker}'"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines == [lines[-1]] and "Traceback" not in proc.stderr
    assert lines[0].startswith("error: model.peft._target_: 'torch.os.system' resolves to posix.system, outside")
    assert not marker.exists()
    assert not list((tmp_path / "outputs").glob("????-??-??/*"))  # refused before Hydra made a run directory


def test_cli_refuses_a_denied_entry_point_unless_allowed_by_name(tmp_path):
    proc = _cli(["evaluator.metrics=[accuracy,torch.hub.load]", "model.peft=null", "stages=[]"], tmp_path)
    assert proc.returncode == 2
    assert "evaluator.metrics.1: 'torch.hub.load' resolves to torch.hub.load, refused by default" in proc.stderr
    assert "allowed_targets=[torch.hub.load]" in proc.stderr


def test_cli_prints_one_line_and_under_debug_the_whole_chain(tmp_path):
    args = ["trainer._target_=modelops.no_such_module.Trainer"]
    plain = _cli(args, tmp_path)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [
        "error: trainer._target_: 'modelops.no_such_module.Trainer' does not exist (no 'no_such_module' in modelops)"
    ]
    debug = _cli(args, tmp_path, debug=True)
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr
    assert "ModuleNotFoundError: No module named 'modelops.no_such_module'" in debug.stderr  # the original cause
    assert "The above exception was the direct cause of the following exception" in debug.stderr
    assert debug.stderr.rstrip().endswith("does not exist (no 'no_such_module' in modelops)")
