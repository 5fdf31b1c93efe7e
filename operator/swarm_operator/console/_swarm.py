"""The resource a console command is about, and the one error type every command raises.

Shared by every console module and by :mod:`swarm_operator.swarmctl`: :class:`Swarm` is the resource
as the user's kubeconfig read it, :class:`ConsoleError` the failure a user can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from swarm_operator import bootstrap
from swarm_operator.cluster import user as cluster

__all__ = ["ConsoleError", "Swarm", "first_line"]


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
    def session(self) -> str:
        return bootstrap.session_name(self.namespace, self.name, self.uid)

    @property
    def socket(self) -> str:
        return bootstrap.socket_name(self.namespace, self.name, self.uid)

    @property
    def sandbox_id(self) -> str:
        sandbox_id = (self.status.get("sandbox") or {}).get("id")
        if not sandbox_id:
            phase = self.status.get("phase") or "Pending"
            raise ConsoleError(
                f"swarm {self.namespace}/{self.name} has no sandbox yet (phase {phase}); "
                f"wait for it: kubectl wait --for=condition=Ready swarm/{self.name} "
                f"-n {self.namespace}"
            )
        return str(sandbox_id)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (SDK errors can carry whole response bodies)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
