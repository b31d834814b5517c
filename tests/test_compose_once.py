"""`python -m modelops` composes a single run's config once (Hydra's own composition) and checks it once."""

from __future__ import annotations

import sys

import modelops.config.build
import modelops.run as pipeline
from modelops.__main__ import main


def test_a_single_run_is_composed_once_and_checked_once(tmp_path, monkeypatch):
    checked, composed = [], []
    real_check, real_compose = pipeline.check, modelops.config.build.compose
    monkeypatch.setattr(pipeline, "check", lambda cfg: (checked.append(cfg.stages), real_check(cfg))[1])
    monkeypatch.setattr(
        modelops.config.build, "compose", lambda *a, **k: (composed.append(a), real_compose(*a, **k))[1]
    )
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # main() sets it when unset; restored after the test
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    argv = ["modelops", "+recipe=sft_tiny", "stages=[preview]", "tracking=none", f"hydra.run.dir={run_dir}"]
    monkeypatch.setattr(sys, "argv", argv)
    main()
    # Checked once (by the callback, before the run directory existed), and the pipeline did not check again;
    # no composition besides hydra.main's own (the compose API is not called).
    assert [list(stages) for stages in checked] == [["preview"]]
    assert composed == []
    assert (run_dir / "data" / "train_preview.txt").is_file()
