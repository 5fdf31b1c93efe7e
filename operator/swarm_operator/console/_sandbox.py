"""The E2B side of the console: a connection to the swarm's sandbox that never resumes a paused one.

The SDK's ``Sandbox.connect`` resumes a paused sandbox, behind the operator's back; so every
connection here is checked first against the resource and against E2B's own state, and every E2B
failure becomes one :class:`ConsoleError` line (:func:`e2b_errors`, used by
:mod:`swarm_operator.swarmctl` too).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from swarm_operator import model
from swarm_operator.console._kube import api_key
from swarm_operator.console._swarm import ConsoleError, Swarm, first_line

__all__ = ["connect", "e2b_errors", "refuse_if_suspended"]

_E2B_CONTROL_TIMEOUT = 15.0  # seconds for one control-plane call (get_info)


def _suspended(swarm: Swarm) -> str:
    """``resume`` advice if the resource says it is (or is being) suspended, else ``""``."""
    status = swarm.observed.status
    if (
        status.phase is model.Phase.SUSPENDED
        or any(c.type == "Suspended" and c.status == "True" for c in status.conditions)
        or (swarm.body.get("spec") or {}).get("suspend") is True
    ):
        return (
            f"swarm {swarm.namespace}/{swarm.name} is suspended (its sandbox is paused) and connecting "
            f"would resume it; resume the swarm first: kubectl patch swarm {swarm.name} -n "
            f'{swarm.namespace} --type=merge -p \'{{"spec":{{"suspend":false}}}}\''
        )
    return ""


def refuse_if_suspended(swarm: Swarm) -> None:
    """A :class:`ConsoleError` if the resource says the swarm is (being) suspended; no E2B call."""
    refusal = _suspended(swarm)
    if refusal:
        raise ConsoleError(refusal)


def _awake(swarm: Swarm) -> tuple[str, str]:
    """(sandbox id, API key) of the swarm, once both the resource and E2B's control plane say it is running.

    The SDK's ``Sandbox.connect`` *resumes* a paused sandbox, which then runs (and bills) until its
    timeout and dies there, behind the operator's back. So a suspended swarm — by its resource
    (``spec.suspend``, phase or ``Suspended`` condition), or by the sandbox's own state, which
    ``get_info`` reads without resuming — is refused here, before anything could connect.
    """
    from swarm_operator.backend import sandbox_paused

    refuse_if_suspended(swarm)
    sandbox_id, key = swarm.sandbox_id, api_key(swarm)
    with e2b_errors(sandbox_id):
        # The async SDK, on a loop of its own: a sync control-plane call made first leaves the sync
        # SDK's shared transport in a state where the PTY's bidirectional stream later stalls.
        paused = sandbox_paused(sandbox_id, key, timeout=_E2B_CONTROL_TIMEOUT)
    if paused:
        raise ConsoleError(
            f"sandbox {sandbox_id} of swarm {swarm.namespace}/{swarm.name} is paused and "
            "connecting would resume it; leave it to the operator (see `swarm-operator "
            "status`) or resume the swarm with spec.suspend=false"
        )
    return sandbox_id, key


def connect(swarm: Swarm) -> Any:
    """The swarm's sandbox through the (synchronous) E2B SDK, with E2B failures as one line.

    Never resumes: a suspended swarm or a paused sandbox is a :class:`ConsoleError`
    (:func:`_awake`).
    """
    from swarm_operator.backend import connect_sync

    sandbox_id, key = _awake(swarm)
    with e2b_errors(sandbox_id):
        return connect_sync(sandbox_id, key)


@contextlib.contextmanager
def e2b_errors(sandbox_id: str) -> Iterator[None]:
    """Turn the SDK's failures on ``sandbox_id`` (bad key, sandbox gone, E2B down) into one line."""
    from swarm_operator.backend import sdk_errors

    errors = sdk_errors()
    try:
        yield
    except errors.authentication:
        raise ConsoleError("E2B refused the API key from the swarm's Secret; put a valid key in it") from None
    except errors.not_found:
        raise ConsoleError(
            f"sandbox {sandbox_id} no longer exists; the operator will replace or "
            "report it (see `swarm-operator status`)"
        ) from None
    except errors.sandbox as exc:
        raise ConsoleError(f"E2B: {first_line(exc)}") from None
    except OSError as exc:
        url = os.environ.get("E2B_API_URL", "https://api.e2b.app")
        raise ConsoleError(f"cannot reach E2B at {url} ({first_line(exc)})") from None
