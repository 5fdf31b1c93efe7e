"""``spec.task`` (a prompt handed to the swarm once it is Ready, and when it counts as done) and
``status.task`` (what was delivered, so it is delivered exactly once per change)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from swarm_operator.model._vocab import Timestamp, _Spec

__all__ = [
    "MAX_PROMPT_CHARS",
    "MAX_ROLE_PROMPT_CHARS",
    "PROMPT",
    "TASK_RULE",
    "TaskAgentPrompt",
    "TaskCompletionSpec",
    "TaskSpec",
    "TaskStatus",
    "prompt_digest",
]

#: A prompt is typed into a terminal: no control character but newline and tab (an ESC could end
#: the agent's bracketed paste early and type the rest as keystrokes; NUL cannot cross a process).
PROMPT = r"^[^\x00-\x08\x0b-\x1f\x7f]+$"
#: The shared prompt's cap; each role prompt's is smaller, so 100 of them stay well inside what
#: one Kubernetes object may hold (etcd's 1.5 MiB).
MAX_PROMPT_CHARS = 32_768
MAX_ROLE_PROMPT_CHARS = 8_192
#: The CEL rule (mirrored in ``_crd.CEL_MIRRORS``) that makes an empty task a 422, as the model refuses it.
TASK_RULE = "has(self.prompt) || (has(self.agents) && size(self.agents) > 0)"


class TaskAgentPrompt(_Spec):
    """One pane's own prompt (its role), in place of the shared one."""

    index: int = Field(ge=0, le=99, description="The agent's pane index (0 .. agents-1).")
    prompt: str = Field(
        min_length=1,
        max_length=MAX_ROLE_PROMPT_CHARS,
        pattern=PROMPT,
        description="What this agent is told instead of spec.task.prompt.",
    )


class TaskCompletionSpec(_Spec):
    """When the task counts as done, and what then stops the meter."""

    idle_seconds: int = Field(
        ge=10,
        le=604_800,
        description="Done once every agent has exited, or has printed nothing for this long, after "
        "the task was delivered (as the health probe sees them: within one health interval after).",
    )
    action: Literal["Suspend", "Delete"] = Field(
        default="Suspend",
        description="What happens when done. Suspend: the sandbox is paused (work kept). Delete: "
        "the sandbox is killed (work lost). Either way the resource stays, phase Succeeded, "
        "until its spec changes (which resumes or recreates the swarm) or it is deleted.",
    )


class TaskSpec(_Spec):
    """A prompt given to the agents once the swarm is Ready, typed into each agent's pane."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": TASK_RULE, "message": "a task needs a prompt or at least one agents[] prompt"}
            ]
        }
    )

    prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
        pattern=PROMPT,
        description="What every agent is told (newlines and tabs allowed, no other control "
        "characters). Delivered once per change, when the swarm is Ready.",
    )
    agents: list[TaskAgentPrompt] = Field(
        default_factory=list,
        max_length=100,
        description="Per-pane prompts (roles), by pane index; each replaces the shared prompt for "
        "its pane. An index at or past spec.agents has no pane and gets nothing.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["index"]},
    )
    completion: TaskCompletionSpec | None = Field(
        default=None,
        description="When the task is done and what then stops the meter. Unset: the swarm runs on.",
    )

    @model_validator(mode="after")
    def _something_to_say(self) -> TaskSpec:
        if self.prompt is None and not self.agents:
            raise ValueError("a task needs a prompt or at least one agents[] prompt")
        indices = [a.index for a in self.agents]
        if len(set(indices)) != len(indices):
            raise ValueError("task.agents holds an index twice")
        return self

    def prompts(self, agents: int) -> dict[int, str]:
        """What each of ``agents`` panes is told: its role prompt, else the shared one (a pane with
        neither is left out)."""
        roles = {a.index: a.prompt for a in self.agents}
        out = {i: roles.get(i, self.prompt) for i in range(agents)}
        return {i: p for i, p in out.items() if p is not None}

    def digest(self, agents: int) -> str:
        """The identity of what the panes are told: changes exactly when some pane's prompt does."""
        return prompt_digest(json.dumps(sorted(self.prompts(agents).items())))


def prompt_digest(text: str) -> str:
    """A short stable hash of a prompt (or of the whole task): what status and the in-sandbox mark
    record instead of the text."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


class TaskStatus(BaseModel):
    """What of spec.task has been delivered (written by the operator only)."""

    model_config = ConfigDict(
        extra="ignore", populate_by_name=True, alias_generator=to_camel, validate_assignment=True
    )

    generation: int = Field(
        default=0,
        ge=0,
        description="Delivered changes of what the panes are told (a prompt, or the panes a scale "
        "adds or removes) so far: 1 after the first delivery.",
    )
    hash: str | None = Field(
        default=None, max_length=64, description="Hash of the prompts delivered (not the text)."
    )
    sandbox_id: str | None = Field(
        default=None, max_length=128, description="The sandbox they were delivered to."
    )
    delivered_at: Timestamp | None = Field(
        default=None,
        description="When they were delivered (or the swarm ran again after completing): "
        "spec.task.completion counts from here.",
    )
    agents: list[Annotated[int, Field(ge=0, le=99)]] = Field(
        default_factory=list, max_length=100, description="Pane indices that hold the task."
    )
    message: str = Field(default="", max_length=1024, description="Why the last delivery failed, if it did.")
