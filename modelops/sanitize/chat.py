"""Chat structure: drop conversations a chat template cannot train on (bad roles, no answer, broken turns)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from modelops.errors import ConfigError
from modelops.sanitize.step import SanitizeStep, StepContext, flags, map_step

ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


@dataclass
class ChatStructure(SanitizeStep):
    """Reject chat rows whose messages break the structure, with one reason per rule (first failing wins).

    - ``chat:bad_role=<role>``: a role outside `roles` (missing roles read as ``None``);
    - ``chat:no_assistant``: no assistant message with non-blank content;
    - ``chat:ends_with=<role>``: the last message is not the assistant's (a user turn left
      unanswered, or a tool result with no answer after it): nothing after it can be trained;
    - ``chat:not_alternating``: after leading system messages, turns must go user, assistant,
      user, ... A tool message answers the assistant's call, so a run of assistant and tool
      messages is one assistant turn; a system message after the start breaks the order.

    Args:
        roles: the valid roles (a subset of system, user, assistant, tool).
        require_assistant: apply the ``no_assistant`` rule.
        require_assistant_last: apply the ``ends_with`` rule.
        require_alternation: apply the ``not_alternating`` rule.
    """

    roles: list[str] | None = None
    require_assistant: bool = True
    require_assistant_last: bool = True
    require_alternation: bool = True
    name: ClassVar[str] = "chat_structure"
    formats: ClassVar[tuple[str, ...]] = ("chat",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.roles = list(ROLES) if self.roles is None else list(self.roles)
        unknown = sorted(set(self.roles) - set(ROLES))
        if unknown or not self.roles:
            raise ConfigError(f"chat_structure.roles: {self.roles!r} must be a non-empty subset of {list(ROLES)}")

    def reason(self, messages: list[dict] | None) -> str:
        """Why a conversation breaks the structure ("" when it is fine)."""
        messages = messages or []
        for m in messages:
            if m.get("role") not in self.roles:
                return f"chat:bad_role={m.get('role')}"
        if self.require_assistant and not any(
            m["role"] == "assistant" and (m.get("content") or "").strip() for m in messages
        ):
            return "chat:no_assistant"
        if self.require_assistant_last and messages and messages[-1]["role"] != "assistant":
            return f"chat:ends_with={messages[-1]['role']}"
        if self.require_alternation and not _alternates([m["role"] for m in messages]):
            return "chat:not_alternating"
        return ""

    def __call__(self, table, ctx: StepContext):
        def batch_fn(batch):
            reasons = [self.reason(messages) for messages in batch["messages"]]
            return flags(len(reasons), reasons)

        return map_step(table, ctx, batch_fn, parallel=False)


def _alternates(roles: list[str]) -> bool:
    start = 0
    while start < len(roles) and roles[start] == "system":
        start += 1
    turns: list[str] = []
    for role in roles[start:]:
        turn = "assistant" if role == "tool" else role
        if turn == "assistant" and turns and turns[-1] == "assistant":
            continue  # a tool call, its result and the answer make one assistant turn
        turns.append(turn)
    expected = ("user", "assistant")
    return all(turn == expected[i % 2] for i, turn in enumerate(turns))
