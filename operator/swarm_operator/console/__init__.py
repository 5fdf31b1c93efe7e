"""What a person at a terminal asks of one swarm: ``status``, ``logs`` and ``attach``.

Everything here goes through the user's own kubeconfig (the resource, its Events, the Secret holding
its E2B key) and then straight to the sandbox through the E2B SDK, never through the operator: the
commands work while the operator is down, which is when people reach for them.

Every failure a user can cause or meet (no kubeconfig, cluster down, no such resource, no Secret, no
sandbox yet, E2B refusing the key) is raised as :class:`ConsoleError` with one line that says what to do;
the CLI prints it and exits non-zero. Anything else is a bug and is allowed to show its traceback.

The modules, one noun each: ``_swarm`` (the resource and the error type), ``_kube`` (the Kubernetes
side), ``_sandbox`` (the E2B connection that never resumes), ``_status`` (the status page), ``_logs``
and ``_attach``. :mod:`swarm_operator.swarmctl` builds on the connection and the two error
translators (:func:`kube_errors`, :func:`e2b_errors`).
"""

from __future__ import annotations

from swarm_operator.console._attach import DETACH_KEY, attach
from swarm_operator.console._kube import api_key, events, kube_client, kube_errors, load_swarm
from swarm_operator.console._logs import logs
from swarm_operator.console._sandbox import connect, e2b_errors, refuse_if_suspended
from swarm_operator.console._status import format_status, status_json
from swarm_operator.console._swarm import ConsoleError, Observed, Swarm, read_status

__all__ = [
    "DETACH_KEY",
    "ConsoleError",
    "Observed",
    "Swarm",
    "api_key",
    "attach",
    "connect",
    "e2b_errors",
    "events",
    "format_status",
    "kube_client",
    "kube_errors",
    "load_swarm",
    "logs",
    "read_status",
    "refuse_if_suspended",
    "status_json",
]
