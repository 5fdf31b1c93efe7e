"""The resource a console command is about, and the one error type every command raises.

Shared by every console module and by :mod:`swarm_operator.swarmctl`: :class:`Swarm` is the resource
as the user's kubeconfig read it, :class:`ConsoleError` the failure a user can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import ValidationError

from swarm_operator import bootstrap, model
from swarm_operator.cluster import user as cluster

__all__ = ["ConsoleError", "Observed", "Swarm", "first_line", "read_status"]


class ConsoleError(Exception):
    """A failure the user can act on; ``str()`` is the one line to print."""


@dataclass(frozen=True)
class Swarm:
    """One SwarmSandbox as read from the cluster, with the client that read it."""

    api: cluster.ApiClient
    body: dict[str, Any]

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.body.get("status") or {})

    @property
    def observed(self) -> Observed:
        """``status`` read through the status model (:func:`read_status`)."""
        return read_status(self.body.get("status"))

    @property
    def session(self) -> str:
        return bootstrap.session_name(self.namespace, self.name, self.uid)

    @property
    def socket(self) -> str:
        return bootstrap.socket_name(self.namespace, self.name, self.uid)

    @property
    def sandbox_id(self) -> str:
        observed = self.observed
        if "sandbox" in observed.unreadable:
            raise ConsoleError(
                f"swarm {self.namespace}/{self.name}: this swarm-operator cannot read its status.sandbox "
                f"(written by a newer operator?); see: swarm-operator status {self.name} -o json"
            )
        sandbox_id = observed.status.sandbox.id if observed.status.sandbox else None
        if not sandbox_id:
            phase = observed.phase
            raise ConsoleError(
                f"swarm {self.namespace}/{self.name} has no sandbox yet (phase {phase}); "
                f"wait for it: kubectl wait --for=condition=Ready swarm/{self.name} "
                f"-n {self.namespace}"
            )
        return str(sandbox_id)


class Observed(NamedTuple):
    """A stored status as the status model reads it, and the top-level fields it could not read."""

    status: model.SwarmSandboxStatus
    unreadable: frozenset[str]

    @property
    def phase(self) -> str:
        """The phase as the pages print it: ``Pending`` before the first write, ``-`` if unreadable."""
        if "phase" in self.unreadable:
            return "-"
        return self.status.phase.value if self.status.phase else "Pending"


def read_status(raw: Any) -> Observed:
    """Read a stored ``status`` through :class:`model.SwarmSandboxStatus`, one top-level field at a time.

    The console may be older (or newer) than the operator that wrote the status, and a status can be
    edited by hand: a field the model cannot read is left unset and named in ``unreadable``, so a page
    shows ``-`` for it and everything else as usual, instead of a traceback.
    """
    try:
        return Observed(model.SwarmSandboxStatus.from_body(raw), frozenset())
    except ValidationError:
        pass
    if not isinstance(raw, Mapping):
        return Observed(model.SwarmSandboxStatus(), frozenset({"status"}))
    readable: dict[str, Any] = {}
    unreadable: set[str] = set()
    for key, value in raw.items():
        try:
            model.SwarmSandboxStatus.from_body({key: value})
        except ValidationError:
            unreadable.add(str(key))
        else:
            readable[key] = value
    return Observed(model.SwarmSandboxStatus.from_body(readable), frozenset(unreadable))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (SDK errors can carry whole response bodies)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
