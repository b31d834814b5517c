"""GRPO as a task: sample a group of completions per prompt, score them, step on the clipped surrogate.

The loop (`modelops.train.loop`) drives it like any task (`GRPO`, registered as `trainer.objective=grpo` in
`modelops.tasks.task`); what differs lives here:

- `GRPO.tokenize` turns the `prompt` rows (text, or chat messages through the chat template) into prompt token
  ids, keeping the rows' other columns for the rewards; a micro-batch is `batch_size` prompts, each sampled
  `num_generations` times.
- `GRPOStepper.feed` turns the loop's windows (the micro-batches of one optimizer step) into rollouts: the
  whole window is generated at once, in eval mode, with the KV cache and the sampling settings, then scored by
  the reward functions (`modelops.tasks.rewards`), and turned into group-normalised advantages
  (`modelops.tasks.grpo.group_advantages`); the policy's log-probs at sampling time (`num_iterations > 1`) and
  the reference's (`beta > 0`) are taken once. The same rollouts serve `num_iterations` optimizer steps.
- `GRPOStepper.step` takes one optimizer step over the rollouts' micro-batches: each micro-batch's share of the
  step's loss (`modelops.tasks.grpo.aggregate`, normalised by the totals of the whole step over all processes),
  so any split into micro-batches or processes gives the same update.
- `Rollouts` is saved with every checkpoint: a run killed between the iterations of one generation resumes
  with the very completions it was stepping on (Accelerate's checkpoint carries the sampling RNG).

Groups are never split across processes: each process samples and scores the groups of its own prompts, and
the logged reward statistics are reduced over all of them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Iterator
from typing import Any

from modelops.errors import ConfigError, DataError, JobError
from modelops.models.generation import generate_ids, generation_options, left_pad, stop_ids
from modelops.models.spec import ModelSpec
from modelops.tasks import grpo as math_
from modelops.tasks.base import Task, TrainConfig
from modelops.tasks.batching import eval_batches
from modelops.tasks.rewards import Reward, build_rewards, score
from modelops.tasks.sft import bos_to_add
from modelops.tasks.truncation import CUT, PROMPT_CUT, ROW, WHOLE

#: The columns of a tokenised prompt row that are not the row's own.
_TOKEN_COLUMNS = ("input_ids", "length", ROW, CUT)


class GRPO(Task):
    """A causal LM trained by GRPO on `prompt` rows with reward functions (`trainer.objective=grpo`)."""

    name = "grpo"
    causal = True
    eval_metrics = ("reward",)

    def __init__(self, objective: str = "grpo"):
        super().__init__(objective)
        self.rollouts = Rollouts()

    def check(self, spec: ModelSpec, dataset, config: TrainConfig) -> None:
        if spec.task != "causal_lm":
            raise ConfigError(
                f"trainer.objective=grpo: generates completions, for causal LMs, not model.task={spec.task}"
            )
        if dataset.format != "prompt":
            hint = " (a prompt/answer file is read as completion data: set dataset.format=prompt)" if (
                dataset.format == "completion") else ""  # fmt: skip
            raise ConfigError(
                f"trainer.objective=grpo samples completions of prompts: it needs `prompt` data (a prompt column, "
                f"text or chat messages, and the columns the rewards read), not {dataset.format!r}{hint}"
            )
        if config.batching == "packing":
            raise ConfigError("trainer.batching=packing: not with trainer.objective=grpo (prompts are generated from)")
        if config.truncation_side != "left":
            raise ConfigError(
                f"trainer.truncation_side={config.truncation_side!r}: not with trainer.objective=grpo; an over-long "
                "prompt is cut from the left (its end, next to the completion, is kept)"
            )
        if not config.rewards:
            raise ConfigError(
                "trainer.rewards: trainer.objective=grpo needs at least one reward function, e.g. "
                "trainer.rewards=[{_target_: modelops.tasks.rewards.correctness, _partial_: true, column: answer}]"
            )
        build_rewards(config.rewards, config.reward_weights)  # names a bad entry before anything is loaded
        if spec.max_length - config.max_new_tokens < 1:
            raise ConfigError(
                f"trainer.max_new_tokens={config.max_new_tokens} leaves no room for a prompt in "
                f"model.max_length={spec.max_length}"
            )

    def _tracked_for(self, spec: ModelSpec) -> str:
        return f"{spec.task} with trainer.objective=grpo"

    def cache_key(self, dataset, spec: ModelSpec, config: TrainConfig) -> dict[str, Any]:
        return {"prompts": True, "max_new_tokens": config.max_new_tokens}

    def tokenize(self, dataset, split: str, tokenizer, spec: ModelSpec, config: TrainConfig, locate):
        return tokenize_prompts(dataset[split], tokenizer, spec.max_length - config.max_new_tokens, config.too_long,
                                locate)  # fmt: skip

    def rows(self, tokenized):
        return tokenized.remove_columns([CUT])  # the prompt and the columns the rewards read ride along

    def collator(self, tokenizer, spec: ModelSpec, packing: bool, layout: str):
        return collate_prompts

    def preview(self, tokenized, tokenizer, n: int, labels: list[str] | None = None) -> str:
        rows = tokenized.select(range(min(n, len(tokenized))))
        return "\n".join(f"--- prompt {i} ({len(row['input_ids'])} tokens)\n"
                         f"{tokenizer.decode(row['input_ids'], skip_special_tokens=False)}"
                         for i, row in enumerate(rows))  # fmt: skip

    def loss_step(self, accelerator, model, spec: ModelSpec, config: TrainConfig):
        """The reference model (the start model) when the KL term is on (`beta > 0`), else None (none is loaded)."""
        if not config.beta:
            return None
        from modelops.tasks.preference import Reference

        return Reference(model, spec.peft is not None, accelerator.autocast).to(accelerator.device)

    def stepper(self, default, accelerator, model, optimizer, scheduler, config: TrainConfig, loss_step,
                tokenizer=None):  # fmt: skip
        return GRPOStepper(accelerator, model, optimizer, scheduler, tokenizer, config, loss_step, self.rollouts)

    def steps_per_window(self, config: TrainConfig) -> int:
        return config.num_iterations

    def resume_key(self, config: TrainConfig) -> dict[str, Any]:
        return {"num_generations": config.num_generations, "num_iterations": config.num_iterations}

    def checkpointed(self) -> list[Any]:
        return [self.rollouts]

    def validation_scorer(self, loss_step, accelerator, model, validation, collate, config: TrainConfig,
                          stepper=None):  # fmt: skip
        if validation is None:
            return None
        return functools.partial(stepper.validate, validation, config.eval_batch_size)

    def default_metrics(self, data_format: str) -> list[str]:
        raise DataError("prompt data has no reference answers the evaluator scores; evaluate on completion data")


# -- data -------------------------------------------------------------------------------------------------------


def prompt_text(prompt: Any, tokenizer) -> str:
    """What the model continues: a text prompt as it is, chat messages through the tokenizer's chat template."""
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("chat prompts need a tokenizer with a chat template; this model's tokenizer has none")
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


def tokenize_prompts(table, tokenizer, max_prompt: int, too_long: str, locate):
    """The rows of `table` with their prompt's token ids (`input_ids`, `length`) and the bookkeeping columns of
    `modelops.tasks.truncation` (`ROW`, `CUT`); a prompt longer than `max_prompt` keeps its end (`truncate`), is
    left out (`skip`) or is an error naming its file and line (`reject`). Tokenised as SFT does: BOS first when
    the tokenizer adds one, never twice (a chat template that writes it already)."""
    import datasets

    prompts = table["prompt"]
    texts = [prompt_text(p, tokenizer) for p in prompts]
    bos = bos_to_add(tokenizer)
    ids = [[bos] if bos is not None and not text.startswith(tokenizer.bos_token) else [] for text in texts]
    for row, tokens in zip(ids, tokenizer(texts, add_special_tokens=False)["input_ids"], strict=True):
        row.extend(tokens)
    keep, cuts = [], []
    for i, row in enumerate(ids):
        cut = WHOLE
        if len(row) > max_prompt:
            if too_long == "reject":
                raise DataError(
                    f"{locate([i])[0]}: the prompt has {len(row)} tokens, more than model.max_length - "
                    f"trainer.max_new_tokens = {max_prompt}; shorten it, raise model.max_length, or set "
                    "trainer.too_long=truncate|skip"
                )
            if too_long == "skip":
                continue
            ids[i], cut = row[-max_prompt:], PROMPT_CUT  # the end of the prompt, next to the completion, is kept
        keep.append(i)
        cuts.append(cut)
    kept = table.select(keep)
    columns = {"input_ids": [ids[i] for i in keep], "length": [len(ids[i]) for i in keep], ROW: keep, CUT: cuts}
    return datasets.Dataset.from_dict({**columns, **{c: kept[c] for c in kept.column_names}})


def collate_prompts(features: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of prompts: their token ids, the prompts as the rows give them, and the rows' other columns."""
    others = [k for k in features[0] if k not in _TOKEN_COLUMNS and k != "prompt"]
    return {"prompt_ids": [list(f["input_ids"]) for f in features], "prompts": [f["prompt"] for f in features],
            "columns": {k: [f[k] for f in features] for k in others},
            "num_tokens": sum(int(f["length"]) for f in features), "num_targets": len(features)}  # fmt: skip


# -- rollouts ---------------------------------------------------------------------------------------------------


class Rollouts:
    """The completions of one generation and what the steps on them need; saved with every checkpoint.

    `batches` holds one dict of tensors per micro-batch (on the device while training, on the CPU in a
    checkpoint): `input_ids`, `attention_mask`, `position_ids`, `completion_mask`, `advantages`, and `old_logps` /
    `ref_logps` when they are used. `remaining` counts the optimizer steps still to take on them;
    `sequences` and `tokens` are the step's totals over all processes (the loss's normalisers).
    """

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.remaining = 0
        self.sequences = 0
        self.tokens = 0.0

    def state_dict(self) -> dict[str, Any]:
        cpu = [{k: v.cpu() for k, v in batch.items()} for batch in self.batches]
        return {"batches": cpu, "remaining": self.remaining, "sequences": self.sequences, "tokens": self.tokens}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.batches, self.remaining = saved["batches"], saved["remaining"]
        self.sequences, self.tokens = saved["sequences"], saved["tokens"]

    def to(self, device) -> None:
        self.batches = [{k: v.to(device) for k, v in batch.items()} for batch in self.batches]


class GRPOStepper:
    """Generation, rewards and optimizer steps of GRPO, with the interface of the loop's `_Stepper`.

    Args:
        accelerator, model, optimizer, scheduler: the prepared training parts.
        tokenizer: the model's tokenizer (padding, EOS, decoding completions).
        config: the trainer settings (`num_generations`, `max_new_tokens`, `temperature`, `top_p`, `epsilon`,
            `epsilon_high`, `beta`, `loss_type`, `scale_rewards`, `num_iterations`, `rewards`, `reward_weights`).
        reference: the reference model's scorer (`modelops.tasks.preference.Reference`) when `beta > 0`.
        rollouts: the checkpointed rollouts (registered with the accelerator before a resume loads them).
    """

    def __init__(self, accelerator, model, optimizer, scheduler, tokenizer, config: TrainConfig, reference,
                 rollouts: Rollouts):  # fmt: skip
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.tokenizer, self.config = tokenizer, config
        self.reference, self.rollouts = reference, rollouts
        self.rewards: list[Reward] = build_rewards(config.rewards or [], config.reward_weights)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos = stop_ids(accelerator.unwrap_model(model), tokenizer)
        self.max_grad_norm = config.max_grad_norm
        self.tokens, self.prompts_done, self.idle, self.started = 0, 0, 0.0, time.perf_counter()
        self.last_loss = float("nan")
        self._sums: dict[str, float] = {}
        self._counts: dict[str, float] = {}

    def feed(self, windows: Iterator[list[dict[str, Any]]]) -> Iterator[Rollouts]:
        """The rollouts of each optimizer step: a new generation every `num_iterations` steps (the loop calls
        `step(next(...))` on them). Rollouts restored from a checkpoint are stepped on first."""
        self.rollouts.to(self.accelerator.device)
        while True:
            if self.rollouts.remaining == 0:
                self._generate(next(windows))
            yield self.rollouts

    def step(self, rollouts: Rollouts):
        """One optimizer step over the rollouts' micro-batches; this process's share of the mean loss (a tensor)."""
        import torch

        accelerator = self.accelerator
        total = torch.zeros((), device=accelerator.device)
        for i, batch in enumerate(rollouts.batches):
            last = i == len(rollouts.batches) - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(self.model):
                loss = self._loss(batch, rollouts) * accelerator.num_processes  # DDP averages over processes
                accelerator.backward(loss)
            total += loss.detach()
        if self.max_grad_norm:
            accelerator.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        if not self.optimizer.step_was_skipped:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        rollouts.remaining -= 1
        return total / accelerator.num_processes

    def _loss(self, batch: dict[str, Any], rollouts: Rollouts):
        config = self.config
        mask = batch["completion_mask"]
        logps, entropy = math_.completion_logps(self.model, batch["input_ids"], batch["attention_mask"],
                                                mask.shape[1], config.temperature,
                                                position_ids=batch["position_ids"])  # fmt: skip
        per_token, stats = math_.per_token_loss(
            logps, batch.get("old_logps"), batch.get("ref_logps"), batch["advantages"], mask,
            epsilon=config.epsilon, epsilon_high=config.epsilon_high, beta=config.beta,
        )  # fmt: skip
        share = math_.aggregate(per_token, mask, config.loss_type, max_completion_length=config.max_new_tokens,
                                num_sequences=rollouts.sequences, num_tokens=rollouts.tokens)  # fmt: skip
        masked = mask.to(entropy.dtype)
        self._add("entropy", (entropy.detach() * masked).sum(), masked.sum())
        for name in ("kl", "clipped_low", "clipped_high", "clipped_region"):
            if name in stats:
                self._add(name, stats[name].detach(), stats["tokens"])
        return share

    # -- generation -----------------------------------------------------------------------------------------

    def _generate(self, window: list[dict[str, Any]]) -> None:
        """Sample, score and prepare the completions of `window`'s prompts for `num_iterations` steps."""
        import torch

        accelerator, config, group = self.accelerator, self.config, self.config.num_generations
        ids = [row for batch in window for row in batch["prompt_ids"]]
        prompts = [prompt for batch in window for prompt in batch["prompts"]]
        columns = {k: [v for batch in window for v in batch["columns"][k]] for k in window[0]["columns"]}
        started = time.perf_counter()
        prompt_ids, prompt_mask, completion, completion_mask = self._sample(ids)
        lengths = completion_mask.sum(-1).tolist()
        texts = [self.tokenizer.decode(row[: int(n)], skip_special_tokens=True)
                 for row, n in zip(completion.tolist(), lengths, strict=True)]  # fmt: skip
        repeat = [i for i in range(len(ids)) for _ in range(group)]
        total, per_function = score(self.rewards, [prompts[i] for i in repeat], texts,
                                    {k: [v[i] for i in repeat] for k, v in columns.items()})  # fmt: skip
        rewards = torch.as_tensor(total, dtype=torch.float32, device=accelerator.device)
        advantages = self._advantages(rewards)
        self._log_rollout(rewards, per_function, completion_mask)
        input_ids = torch.cat([prompt_ids, completion], dim=1)
        attention = torch.cat([prompt_mask, completion_mask], dim=1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        per_batch = len(window[0]["prompt_ids"]) * group
        batches = []
        for start in range(0, len(input_ids), per_batch):
            part = slice(start, start + per_batch)
            width = max(int(completion_mask[part].sum(-1).max()), 1)  # no column of padding only
            keep = input_ids.shape[1] - completion.shape[1] + width
            batch = {"input_ids": input_ids[part, :keep], "attention_mask": attention[part, :keep],
                     "position_ids": positions[part, :keep], "completion_mask": completion_mask[part, :width],
                     "advantages": advantages[part]}  # fmt: skip
            batches.append(self._score_old(batch))
        sequences = torch.tensor([float(len(input_ids)), float(completion_mask.sum())], device=accelerator.device)
        if accelerator.num_processes > 1:
            sequences = accelerator.reduce(sequences, "sum")
        self.rollouts.batches, self.rollouts.remaining = batches, config.num_iterations
        self.rollouts.sequences, self.rollouts.tokens = int(sequences[0]), float(sequences[1])
        self.tokens += int(completion_mask.sum())
        self.prompts_done += len(ids)
        self.generation_seconds = time.perf_counter() - started

    def _sample(self, ids: list[list[int]]):
        """`num_generations` sampled completions per prompt, each prompt's consecutive; masks cover up to EOS."""
        import torch

        config = self.config
        repeated = [row for row in ids for _ in range(config.num_generations)]
        prompt_ids, prompt_mask = left_pad(repeated, self.pad_id)
        prompt_ids, prompt_mask = prompt_ids.to(self.accelerator.device), prompt_mask.to(self.accelerator.device)
        policy = self.accelerator.unwrap_model(self.model)
        was_training = policy.training
        policy.eval()
        try:
            with torch.no_grad(), self.accelerator.autocast():
                out = policy.generate(
                    input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=True, temperature=config.temperature,
                    top_p=config.top_p, top_k=0, max_new_tokens=config.max_new_tokens, eos_token_id=self.eos,
                    pad_token_id=self.pad_id, use_cache=True, num_beams=1,
                )  # fmt: skip
        finally:
            policy.train(was_training)
        completion = out[:, prompt_ids.shape[1] :]
        is_eos = torch.isin(completion, torch.tensor(self.eos, device=completion.device))
        length = torch.where(is_eos.any(-1), is_eos.int().argmax(-1) + 1, completion.shape[1])  # EOS included
        mask = (torch.arange(completion.shape[1], device=completion.device)[None, :] < length[:, None]).long()
        completion = completion.masked_fill(mask == 0, self.pad_id)
        return prompt_ids, prompt_mask, completion, mask

    def _advantages(self, rewards):
        config, accelerator = self.config, self.accelerator
        if config.scale_rewards != "batch" or accelerator.num_processes == 1:
            return math_.group_advantages(rewards, config.num_generations, config.scale_rewards)
        # The batch's std is over every process's rewards, as TRL's; groups stay whole on their process.
        everyone = accelerator.gather(rewards)
        mine = slice(accelerator.process_index * len(rewards), (accelerator.process_index + 1) * len(rewards))
        return math_.group_advantages(everyone, config.num_generations, "batch")[mine]

    def _score_old(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Add the log-probs of the policy that sampled (when stepping more than once) and of the reference."""
        import torch

        config, width = self.config, batch["completion_mask"].shape[1]
        args = (batch["input_ids"], batch["attention_mask"], width, config.temperature)
        policy = self.accelerator.unwrap_model(self.model)
        if config.num_iterations > 1:
            with torch.no_grad(), self.accelerator.autocast():
                batch["old_logps"] = math_.completion_logps(policy, *args, position_ids=batch["position_ids"])[0]
        if config.beta > 0:

            def reference_logps(model):
                with self.accelerator.autocast():  # as the policy's forward (the frozen copy has its own too)
                    return math_.completion_logps(model, *args, position_ids=batch["position_ids"])[0]

            batch["ref_logps"] = self.reference.score(policy, reference_logps)
        return batch

    # -- metrics --------------------------------------------------------------------------------------------

    def _add(self, name: str, value, count) -> None:
        self._sums[name] = self._sums.get(name, 0.0) + value
        self._counts[name] = self._counts.get(name, 0.0) + count

    def _log_rollout(self, rewards, per_function: dict[str, list[float]], completion_mask) -> None:
        import torch

        group = self.config.num_generations
        grouped = rewards.view(-1, group)
        lengths = completion_mask.sum(-1).float()
        n = float(len(rewards))
        self._add("reward", rewards.sum(), n)
        self._add("reward_std", grouped.std(-1).sum(), grouped.shape[0])
        self._add("frac_reward_zero_std", (grouped.std(-1) < 1e-6).float().sum(), grouped.shape[0])
        self._add("completions/mean_length", lengths.sum(), n)
        self._add("completions/clipped_ratio", (lengths >= self.config.max_new_tokens).float().sum(), n)
        for name, values in per_function.items():
            v = torch.as_tensor(values, dtype=torch.float32, device=rewards.device)
            given = ~torch.isnan(v)
            self._add(f"rewards/{name}/mean", torch.nan_to_num(v).sum(), given.sum())
            self._add(f"rewards/{name}/sq", (torch.nan_to_num(v) ** 2).sum(), given.sum())

    def metrics(self) -> dict[str, float]:
        """Means since the last call over all processes (reward per function with its std), then start again."""
        import torch

        if not self._sums:
            return {}
        names = sorted(self._sums)
        device = self.accelerator.device
        values = torch.stack(
            [torch.as_tensor(self._sums[k], dtype=torch.float64, device=device) for k in names]
            + [torch.as_tensor(self._counts[k], dtype=torch.float64, device=device) for k in names]
        )
        if self.accelerator.num_processes > 1:
            values = self.accelerator.reduce(values, "sum")
        sums, counts = values[: len(names)].tolist(), values[len(names) :].tolist()
        means = {k: s / c if c else float("nan") for k, s, c in zip(names, sums, counts, strict=True)}
        self._sums, self._counts = {}, {}
        out = {}
        for k, v in means.items():
            if k.endswith("/sq"):
                mean = means[k[: -len("sq")] + "mean"]
                out[k[: -len("sq")] + "std"] = math.sqrt(max(v - mean * mean, 0.0))
            elif k.startswith("clipped_"):
                out[f"clip_ratio/{k[len('clipped_') :]}_mean"] = v
            else:
                out[k] = v
        return out

    # -- the loop's stepper interface -----------------------------------------------------------------------

    def loss_value(self, loss, step: int) -> float:
        """The mean loss over all processes (a device sync: only on logging and checkpoint steps)."""
        accelerator = self.accelerator
        value = accelerator.reduce(loss.detach(), "sum").item() if accelerator.num_processes > 1 else loss.item()
        if not math.isfinite(value):
            raise JobError(f"loss became {value} at step {step}: lower trainer.learning_rate or check the rewards")
        self.last_loss = value
        return value

    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.idle += time.perf_counter() - started

    def tokens_per_second(self) -> float:
        """Generated (completion) tokens per second, over all processes."""
        elapsed = time.perf_counter() - self.started - self.idle
        return self.tokens * self.accelerator.num_processes / max(elapsed, 1e-9)

    # -- validation -----------------------------------------------------------------------------------------

    def validate(self, validation, batch_size: int) -> dict[str, float]:
        """Mean reward (and per function) of greedy completions of the validation prompts, over all processes.

        Args:
            validation: the tokenised validation rows (`GRPO.tokenize`: prompt ids and the rows' columns).
        """
        import torch

        accelerator = self.accelerator
        batches = eval_batches(validation, batch_size)[accelerator.process_index :: accelerator.num_processes]
        policy = accelerator.unwrap_model(self.model)
        options = generation_options(policy, self.tokenizer, self.config.max_new_tokens)
        names = [r.name for r in self.rewards]
        sums = torch.zeros(2 + 2 * len(names), dtype=torch.float64)
        policy.eval()
        try:
            for index in batches:
                batch = collate_prompts(validation.__getitems__(index))
                with accelerator.autocast():
                    new_tokens = generate_ids(policy, batch["prompt_ids"], options, batch_size)
                completions = [self.tokenizer.decode(row, skip_special_tokens=True) for row in new_tokens]
                total, per_function = score(self.rewards, batch["prompts"], completions, batch["columns"])
                total = torch.as_tensor(total, dtype=torch.float64)
                given = ~torch.isnan(total)
                parts = [torch.nan_to_num(total).sum(), given.sum()]
                for name in names:
                    values = torch.as_tensor(per_function[name], dtype=torch.float64)
                    parts += [torch.nan_to_num(values).sum(), (~torch.isnan(values)).sum()]
                sums += torch.stack([p.double() for p in parts])
        finally:
            policy.train()
        sums = sums.to(accelerator.device)
        if accelerator.num_processes > 1:
            sums = accelerator.reduce(sums, "sum")
        values = sums.tolist()
        out = {"reward": values[0] / max(values[1], 1)}
        for i, name in enumerate(names):
            out[f"rewards/{name}"] = values[2 + 2 * i] / max(values[3 + 2 * i], 1)
        return out
