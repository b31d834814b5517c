"""Every ```bash and ```python block of README.md and docs/*.md runs, verbatim, and exits as it says.

The blocks of one page run in order in one scratch directory (a later block may use what an earlier one
made: a registered model, a run directory), with `python` being this interpreter. A block is preceded by
an HTML comment when it needs one:

- `<!-- docs-test: not run: REASON -->`: not run here (a GPU, a cluster, a download), with the reason;
- `<!-- docs-test: exit 2 -->`: the commands are examples of refused input and must each exit 2;
- `<!-- docs-test: slow -->`: marked slow (a whole training).

Input files the snippets name (`training_data.jsonl`, `test.jsonl`, ...) are made by `_inputs` first, and
`tests/` is the checkout's (the bad-input corpus).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(
    r"(?:<!--\s*docs-test:\s*(?P<directive>.*?)\s*-->\s*\n)?```(?P<lang>bash|python)\n(?P<body>.*?)```", re.S
)


def _blocks():
    for page in PAGES:
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("body"))
            directive = match.group("directive") or ""
            marks = [pytest.mark.slow] if "slow" in directive.split() else []
            if directive.startswith("not run:"):
                marks.append(pytest.mark.skip(reason=f"{page.name}:{line}: {directive}"))
            yield pytest.param(page, match.group("lang"), match.group("body"), directive,
                               id=f"{page.name}:{line}", marks=marks)  # fmt: skip


def test_every_block_not_run_says_why():
    for page in PAGES:
        for match in _BLOCK.finditer(page.read_text()):
            directive = match.group("directive") or ""
            if directive.startswith("not run"):
                assert len(directive.split(":", 1)[1].strip()) > 10, f"{page.name}: a block not run without a reason"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> dict[str, Path]:
    """One directory per page, with the input files the snippets name."""
    base = tmp_path_factory.mktemp("docs")
    dirs = {}
    for page in PAGES:
        work = base / page.stem
        work.mkdir()
        _inputs(work)
        dirs[page.name] = work
    return dirs


def _inputs(work: Path) -> None:
    from modelops.data.demo_formats import chat_demo
    from modelops.data.demo_sentiment import sentiment

    data = sentiment(n_train=200, n_validation=0, n_test=80, seed=3)
    data.save(str(work / "training_data.jsonl"), split="train")
    data.save(str(work / "my.jsonl"), split="train")
    data.save(str(work / "test.jsonl"), split="test")
    chat_demo(n=64, seed=1, validation=0.0, test=0.0).save(str(work / "chats.jsonl"), split="train")
    (work / "tests").symlink_to(ROOT / "tests")  # snippets that read the bad-input corpus, as from a checkout


@pytest.mark.parametrize(("page", "lang", "body", "directive"), list(_blocks()))
def test_block_runs(page: Path, lang: str, body: str, directive: str, scratch):
    work = scratch[page.name]
    # `python` is this interpreter: its own directory first on PATH (a virtualenv's bin/ has `python`).
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "MODELOPS_CACHE": os.environ.get("MODELOPS_CACHE", str(work.parent / "cache"))}  # fmt: skip
    expected = 2 if directive.startswith("exit 2") else 0
    commands = [body] if lang == "python" else _commands(body)
    for command in commands:
        argv = [sys.executable, "-c", command] if lang == "python" else ["bash", "-c", command]
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=1200)
        assert done.returncode == expected, (
            f"{page.name}: `{command}` exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        if expected == 2:
            assert "Traceback" not in done.stderr, done.stderr


def _commands(body: str) -> list[str]:
    """The block's commands: continuation lines joined, blank and comment-only lines left out."""
    joined = re.sub(r"\\\n\s*", " ", body)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
