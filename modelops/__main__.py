"""`python -m modelops +recipe=NAME [overrides]`: the Hydra entrypoint, nothing more."""

from __future__ import annotations

import os
import sys


def _task(cfg) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from modelops.errors import ModelopsError
    from modelops.run import run, summary

    run_dir = HydraConfig.get().runtime.output_dir
    try:
        results = run(cfg, run_dir)
    except ModelopsError as exc:
        if os.environ.get("MODELOPS_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(summary(results, run_dir))
    tuned = results.get("fine_tuned") or results.get("base")
    return tuned["metrics"].get("accuracy") if tuned else None


def main() -> None:
    import hydra

    from modelops.config.paths import conf_dir
    from modelops.config.recipes import register_recipes

    register_recipes()
    hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(_task)()


if __name__ == "__main__":
    main()
