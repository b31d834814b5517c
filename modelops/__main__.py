"""`python -m modelops +recipe=NAME [overrides]`: the Hydra entrypoint, nothing more.

A single run's config is composed once, by `hydra.main`, and checked once, by the `CheckBeforeRunDir` callback
(conf/config.yaml) before Hydra creates the run directory. A composition error (an unknown key) reaches `main`
and is reported as a config error with a did-you-mean. A multirun is checked first with each swept key's first
value (`precheck`); each trial then checks its own config.
"""

from __future__ import annotations

import os
import sys

from modelops.config.overrides import composition_error, precheck
from modelops.config.paths import conf_dir
from modelops.config.recipes import register_recipes
from modelops.config.resolvers import register_resolvers
from modelops.distributed import is_main_process, prepare_argv
from modelops.errors import ModelopsError, report
from modelops.log import say
from modelops.registry.cli import COMMANDS
from modelops.registry.cli import main as registry_main
from modelops.run import checked_before_run_dir, run, summary
from modelops.sweep import objective_value

_MULTIRUN = ("-m", "--multirun")


def _task(cfg) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    run_dir = HydraConfig.get().runtime.output_dir
    try:
        results = run(cfg, run_dir, validated=checked_before_run_dir())
    except (ModelopsError, OSError) as exc:
        say(report(exc), err=True)  # one line; the traceback with its causes under MODELOPS_DEBUG
        sys.exit(2)
    if is_main_process():
        say(summary(results, run_dir))
    return objective_value(results, cfg.objective)  # what a sweeper (Optuna) optimises


def main() -> None:
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:  # `modelops runs`, `modelops models`, ...: not a Hydra run
        sys.exit(registry_main(sys.argv[1:]))
    register_recipes()
    register_resolvers()
    argv = list(sys.argv)
    try:
        if set(_MULTIRUN) & set(argv):
            precheck(argv)  # every swept key with its first value, before any trial starts
        sys.argv = prepare_argv(sys.argv)
    except ModelopsError as exc:
        print(report(exc), file=sys.stderr)
        sys.exit(2)
    # Hydra's composition errors propagate (instead of being printed and exiting 1) to be reported below.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(_task)()
    except (HydraException, OmegaConfBaseException) as exc:
        print(report(composition_error(exc, argv)), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
