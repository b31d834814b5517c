"""Reward functions: the shipped ones on hand-worked completions, TRL's calling convention, building from config
(allowlist, options checked before training), and `score`'s weighted sum with abstentions and its errors."""

from __future__ import annotations

import functools
import math
import textwrap

import pytest

from modelops.config.construct import construct
from modelops.config.validate import check_node
from modelops.errors import ConfigError, JobError
from modelops.tasks import rewards as R


def _correct(completions, answers, **options):
    return R.correctness(["q"] * len(completions), completions, answer=answers, **options)


# -- correctness ---------------------------------------------------------------------------------


def test_correctness_gsm8k_references_need_the_marker_in_the_completion():
    reference = "Natalia sold 48/2 = 24 clips in May.\n#### 1,072"
    completions = ["48 + 24 = 72 ... so #### 1072", "The answer is 1072.", "#### 1,072.", "#### 1073"]
    assert _correct(completions, [reference] * 4) == [1.0, 0.0, 1.0, 0.0]


def test_correctness_numeric_references_take_the_completions_last_number():
    completions = ["3 + 4 = 7", "3 + 4 = 7\n#### 7", "It is 8, not 7... no, 8", "seven", "7.0", "$7", "-7"]
    assert _correct(completions, ["7"] * len(completions)) == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    assert _correct(["about 1,000"], [1000]) == [1.0]  # an int reference (a CSV column read as numbers)
    assert _correct(["-2.50"], [-2.5]) == [1.0]


def test_correctness_text_references_compare_whole_texts_whitespace_squeezed():
    assert _correct([" Paris ", "Paris.", "The answer is Paris", "paris"], ["Paris"] * 4) == [1.0, 0.0, 0.0, 0.0]


def test_correctness_abstains_on_unusable_references():
    assert _correct(["7", "7", "7"], [None, "   ", "#### unknown"]) == [None, None, None]
    assert R.abstains(R.correctness) and R.abstains(functools.partial(R.correctness, column="x"))
    assert not R.abstains(R.format_match)


def test_correctness_options():
    options = {"filters": [{"regex": r"ANSWER: (\w+)"}, {"normalize": ["case"]}]}
    assert _correct(["ANSWER: Lima", "lima", "ANSWER: quito"], ["ANSWER: LIMA"] * 3, **options) == [1.0, 0.0, 0.0]
    rows = R.correctness(["q", "q"], ["#### 5", "#### 6"], column="solution", solution=["#### 5", "#### 5"])
    assert rows == [1.0, 0.0]
    with pytest.raises(ConfigError, match=r"no column 'answer'.*set column="):
        R.correctness(["q"], ["5"], solution=["5"])


@pytest.mark.skipif(not __import__("modelops.data.answers").data.answers.math_available(), reason="math-verify")
def test_correctness_math_match():
    assert _correct(["#### 1/2", "#### 0.5", "#### 2/3"], ["#### 0.5"] * 3, match="math")[:2] == [1.0, 1.0]


def test_chat_completions_are_read_from_their_content():
    chat = [[{"role": "assistant", "content": "3 + 4 = 7"}], [{"role": "assistant", "content": "#### 9"}]]
    assert _correct(chat, ["7", "7"]) == [1.0, 0.0]
    assert R.format_match(["q", "q"], chat, pattern=r"#### \d+") == [0.0, 1.0]


# -- format_match and length_penalty -------------------------------------------------------------


def test_format_match_searches_with_dotall():
    pattern = r"^.*#### -?\d+"
    completions = ["Step one.\nStep two.\n#### -42", "no marker at all", "#### x"]
    assert R.format_match(["q"] * 3, completions, pattern=pattern) == [1.0, 0.0, 0.0]
    assert R.format_match(["q"], ["a\n<answer>5</answer>"], pattern=r"<answer>.*</answer>\Z") == [1.0]


def test_length_penalty_by_hand():
    completions = ["x" * 5, "x" * 10, "x" * 15, "x" * 30]
    assert R.length_penalty(["q"] * 4, completions, target=10) == [0.0, 0.0, -0.5, -2.0]


# -- TRL's calling convention ---------------------------------------------------------------------


def test_trl_reward_functions_work_as_they_are():
    pytest.importorskip("trl")
    from trl.rewards import think_format_reward

    chat = [[{"role": "assistant", "content": "<think>\nhmm\n</think>\n7"}], [{"role": "assistant", "content": "7"}]]
    rewards = R.build_rewards([think_format_reward, functools.partial(R.correctness)], [0.5, 1.0])
    total, per_function = R.score(rewards, ["What is 3 + 4?"] * 2, chat, {"answer": ["7", "8"]})
    assert per_function == {"think_format_reward": [1.0, 0.0], "correctness": [1.0, 0.0]}
    assert total.tolist() == [1.5, 0.0]


def test_functions_are_called_with_keywords_and_the_rows_columns():
    seen = {}

    def spy(completions, prompts, answer, level, **kwargs):  # TRL style: names, not positions
        seen.update(prompts=prompts, completions=completions, answer=answer, level=level, rest=kwargs)
        return [float(x) for x in level]

    R.score(R.build_rewards([spy], None), ["p0", "p0"], ["c0", "c1"], {"answer": ["7", "7"], "level": [1, 2]})
    assert seen == {"prompts": ["p0", "p0"], "completions": ["c0", "c1"], "answer": ["7", "7"], "level": [1, 2],
                    "rest": {}}  # fmt: skip


# -- building ------------------------------------------------------------------------------------


def test_build_rewards_names_weights_and_errors():
    c = functools.partial(R.correctness, column="answer")
    rewards = R.build_rewards(
        [c, functools.partial(R.correctness, column="b"), functools.partial(R.length_penalty, target=9)], None
    )
    assert [r.name for r in rewards] == ["correctness", "correctness_2", "length_penalty"]
    assert [r.weight for r in rewards] == [1.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match=r"^trainer\.rewards: GRPO needs at least one reward function"):
        R.build_rewards([], None)
    with pytest.raises(ConfigError, match=r"^trainer\.rewards\.1: 'correctness' is not callable"):
        R.build_rewards([c, "correctness"], None)
    with pytest.raises(ConfigError, match=r"^trainer\.reward_weights: 1 weights for 2 reward functions"):
        R.build_rewards([c, c], [1.0])
    with pytest.raises(ConfigError, match=r"^trainer\.reward_weights\.1: nan is not a finite number"):
        R.build_rewards([c, c], [1.0, math.nan])
    with pytest.raises(ConfigError, match=r"^trainer\.reward_weights\.0: '1' is not a finite number"):
        R.build_rewards([c], ["1"])


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (functools.partial(R.correctness, colum="answer"),
         r"0\.colum: unknown option of correctness \(did you mean 'column'\?\)"),
        (functools.partial(R.format_match), r"0\.pattern: format_match needs it"),
        (functools.partial(R.format_match, pattern="(unclosed"), r"0\.pattern: '\(unclosed' does not compile"),
        (functools.partial(R.length_penalty, target=0), r"0\.target: expected a positive number"),
        (functools.partial(R.correctness, filters=[{"regexp": "x"}]), r"0\.filters\.0: unknown filter"),
        (functools.partial(R.correctness, match="fuzzy"), r"0\.match: 'fuzzy' is not one of"),
    ],
)  # fmt: skip
def test_shipped_options_are_checked_when_built(fn, message):
    with pytest.raises(ConfigError, match=r"^trainer\.rewards\." + message):
        R.build_rewards([fn], None)


# -- scoring -------------------------------------------------------------------------------------


def test_score_weighted_sum_with_abstentions():
    rewards = R.build_rewards(
        [functools.partial(R.correctness), functools.partial(R.format_match, pattern=r"#### \d+")], [1.0, 0.2]
    )
    completions = ["#### 7", "7", "#### 8", "nothing"]
    total, per_function = R.score(rewards, ["What is 3 + 4?"] * 4, completions, {"answer": ["7", "7", None, None]})
    assert per_function["format_match"] == [1.0, 0.0, 1.0, 0.0]
    assert per_function["correctness"][:2] == [1.0, 1.0] and all(map(math.isnan, per_function["correctness"][2:]))
    assert total.tolist() == pytest.approx([1.2, 1.0, 0.2, 0.0])  # an abstention adds 0 (TRL's nansum)

    only = R.build_rewards([functools.partial(R.correctness)], None)
    total, _ = R.score(only, ["q", "q"], ["7", "7"], {"answer": ["7", None]})
    assert total[0].item() == 1.0 and math.isnan(total[1].item())  # every function abstained: unscorable


def _bad_row(prompts, completions, **columns):
    return [1.0 / (len(c) - 3) for c in completions]  # fails on a 3-character completion


def _short(prompts, completions, **columns):
    return [1.0] * (len(completions) - 1)


def _none(prompts, completions, **columns):
    return [None if c == "abc" else 1.0 for c in completions]


def _text(prompts, completions, **columns):
    return ["1.0" for c in completions]


def _inf(prompts, completions, **columns):
    return [math.inf for c in completions]


def test_score_errors_name_the_function_and_the_row():
    prompts = ["What is 1 + 1?", "A very long prompt " * 20 + "what is 2 + 2?"]
    completions = ["2", "abc"]
    with pytest.raises(JobError, match=r"reward '_bad_row' failed on row 1 \(prompt 'A very long prompt A") as info:
        R.score(R.build_rewards([_bad_row], None), prompts, completions, {})
    assert isinstance(info.value.__cause__, ZeroDivisionError) and "ZeroDivisionError" in str(info.value)
    assert len(str(info.value)) < 200  # the prompt is cut short
    with pytest.raises(JobError, match=r"reward '_short' returned 1 values for 2 completions"):
        R.score(R.build_rewards([_short], None), prompts, completions, {})
    with pytest.raises(JobError, match=r"reward '_none' returned None/NaN for row 1 .*may_abstain"):
        R.score(R.build_rewards([_none], None), prompts, completions, {})
    with pytest.raises(JobError, match=r"reward '_text' returned '1.0' for row 0 \(prompt 'What is 1 \+ 1\?'\)"):
        R.score(R.build_rewards([_text], None), prompts, completions, {})
    with pytest.raises(JobError, match=r"reward '_inf' returned inf for row 0"):
        R.score(R.build_rewards([_inf], None), prompts, completions, {})
    _, values = R.score(R.build_rewards([R.may_abstain(_none)], None), prompts, completions, {})
    assert values["_none"][0] == 1.0 and math.isnan(values["_none"][1])


# -- config: the allowlist and `_partial_` -------------------------------------------------------

REWARDS_NODE = [
    {"_target_": "modelops.tasks.rewards.correctness", "_partial_": True, "column": "answer"},
    {"_target_": "modelops.tasks.rewards.format_match", "_partial_": True, "pattern": "^.*#### -?\\d+"},
]


def test_partial_reward_targets_pass_validation_and_build():
    check_node("trainer.rewards", REWARDS_NODE)
    functions = construct(REWARDS_NODE, "trainer.rewards")
    rewards = R.build_rewards(functions, [1.0, 0.2])
    total, _ = R.score(rewards, ["What is 3 + 4?"] * 2, ["3 + 4 = 7\n#### 7", "#### 8"], {"answer": ["7", "7"]})
    assert total.tolist() == pytest.approx([1.2, 0.2])


def test_reward_target_outside_the_allowlist_is_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"^trainer\.rewards\.1\._target_: 'os\.system' is outside the allowed"):
        check_node("trainer.rewards", [REWARDS_NODE[0], {"_target_": "os.system", "_partial_": True}])

    (tmp_path / "mypkg_rewards.py").write_text(textwrap.dedent("""
        def shouting(completions, **kwargs):
            return [1.0 if c.isupper() else 0.0 for c in completions]
    """))  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    node = [{"_target_": "mypkg_rewards.shouting", "_partial_": True}]
    with pytest.raises(ConfigError, match=r"^trainer\.rewards\.0\._target_: 'mypkg_rewards\.shouting' is outside"):
        check_node("trainer.rewards", node)
    check_node("trainer.rewards", node, allowed=("mypkg_rewards",))
    functions = construct(node, "trainer.rewards", allowed=("mypkg_rewards",))
    _, values = R.score(R.build_rewards(functions, None), ["q", "q"], ["YES", "no"], {})
    assert values == {"shouting": [1.0, 0.0]}
