"""`python -m modelops` composes a single run's config once (Hydra's own composition) and checks it once."""

from __future__ import annotations

import sys

import hydra

import modelops.run as pipeline
from modelops.__main__ import main


def test_a_single_run_is_composed_once_and_checked_once(tmp_path, monkeypatch):
    checked, composed = [], []
    real_check, real_compose = pipeline.check, hydra.compose
    monkeypatch.setattr(pipeline, "check", lambda cfg: (checked.append(cfg.stages), real_check(cfg))[1])
    # Hydra's compose API: what any composition besides hydra.main's own goes through.
    monkeypatch.setattr(hydra, "compose", lambda *a, **k: (composed.append(k), real_compose(*a, **k))[1])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # main() sets it when unset; restored after the test
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    argv = ["modelops", "+recipe=sft_tiny", "stages=[preview]", "tracking=none", f"hydra.run.dir={run_dir}"]
    monkeypatch.setattr(sys, "argv", argv)
    main()
    # Checked once (by the callback, before the run directory existed), and the pipeline did not check again;
    # no composition besides hydra.main's own (Hydra's compose API, which `modelops.config.build.compose` and the
    # multirun precheck use, is not called).
    assert [list(stages) for stages in checked] == [["preview"]]
    assert composed == []
    assert (run_dir / "data" / "train_preview.txt").is_file()
