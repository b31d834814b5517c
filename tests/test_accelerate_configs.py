"""The shipped accelerate configs parse with accelerate's own launcher and their settings reach its environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

CONFIGS = Path(__file__).resolve().parents[1] / "conf" / "accelerate"


def _launch_env(name: str) -> tuple[object, dict[str, str]]:
    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(CONFIGS / f"{name}.yaml"), "-m", "modelops", "+recipe=lora_small"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        # What `accelerate launch` itself sets before building the DeepSpeed environment.
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config.keys())
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return args, env


def test_every_shipped_config_is_tested():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == {
        "ddp",
        "fsdp",
        "deepspeed_zero2",
        "deepspeed_zero3",
        "multinode",
    }


def test_ddp():
    args, env = _launch_env("ddp")
    assert args.multi_gpu and args.num_processes == 8
    assert env.get("ACCELERATE_USE_FSDP") in (None, "false")


def test_fsdp_settings_reach_the_environment_and_the_plugin(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin

    args, env = _launch_env("fsdp")
    assert args.use_fsdp
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()  # reads the environment as Accelerator does
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True
    assert plugin.cpu_ram_efficient_loading is True


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_stage_reaches_the_environment(stage):
    args, env = _launch_env(f"deepspeed_zero{stage}")
    assert args.use_deepspeed
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
    assert env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == ("true" if stage == 3 else "false")


def test_multinode():
    args, _ = _launch_env("multinode")
    assert args.num_machines == 2 and args.num_processes == 16
    assert (args.main_process_ip, args.main_process_port, args.machine_rank) == ("main-node.example", 29500, 0)
