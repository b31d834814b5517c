"""`python -m modelops +recipe=NAME [overrides]`: the Hydra entrypoint, nothing more."""

from __future__ import annotations

import sys

# Whether `precheck` validated the very config Hydra composes for this (single) run: then it is not validated twice.
_validated = False


def _task(cfg) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from modelops.distributed import is_main_process
    from modelops.errors import ModelopsError, report
    from modelops.log import say
    from modelops.run import run, summary
    from modelops.sweep import objective_value

    run_dir = HydraConfig.get().runtime.output_dir
    try:
        results = run(cfg, run_dir, validated=_validated)
    except (ModelopsError, OSError) as exc:
        say(report(exc), err=True)  # one line; the traceback with its causes under MODELOPS_DEBUG
        sys.exit(2)
    if is_main_process():
        say(summary(results, run_dir))
    return objective_value(results, cfg.objective)  # what a sweeper (Optuna) optimises


def _claim_named_run_dir(cfg, argv: list[str]) -> None:
    """A `hydra.run.dir=` holding another run is refused (or moved aside) before Hydra writes into it."""
    from modelops.rundir import run_dir_override

    run_dir = run_dir_override(argv)
    if cfg is not None and run_dir and not {"-m", "--multirun"} & set(argv):
        from modelops.run import claim_run_dir

        claim_run_dir(cfg, run_dir)


def main() -> None:
    import hydra

    from modelops.config.overrides import precheck
    from modelops.config.paths import conf_dir
    from modelops.config.recipes import register_recipes
    from modelops.config.resolvers import register_resolvers
    from modelops.distributed import prepare_argv
    from modelops.errors import ModelopsError, report
    from modelops.registry.cli import COMMANDS

    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:  # `modelops runs`, `modelops models`, ...: not a Hydra run
        from modelops.registry.cli import main as registry_main

        sys.exit(registry_main(sys.argv[1:]))
    global _validated
    register_recipes()
    register_resolvers()
    try:
        # Before Hydra creates the run directory: a config error leaves nothing behind.
        cfg = precheck(sys.argv)
        _validated = cfg is not None and not {"-m", "--multirun"} & set(sys.argv)
        sys.argv = prepare_argv(sys.argv)
        _claim_named_run_dir(cfg, sys.argv)
    except ModelopsError as exc:
        print(report(exc), file=sys.stderr)
        sys.exit(2)
    hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(_task)()


if __name__ == "__main__":
    main()
