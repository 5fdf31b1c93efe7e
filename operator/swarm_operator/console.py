"""What a person at a terminal asks of one swarm: ``status``, ``logs`` and ``attach``.

Everything here goes through the user's own kubeconfig (the resource, its Events, the Secret holding
its E2B key) and then straight to the sandbox through the E2B SDK, never through the operator: the
commands work while the operator is down, which is when people reach for them.

Every failure a user can cause or meet (no kubeconfig, cluster down, no such resource, no Secret, no
sandbox yet, E2B refusing the key) is raised as :class:`ConsoleError` with one line that says what to do;
the CLI prints it and exits non-zero. Anything else is a bug and is allowed to show its traceback.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from swarm_operator import bootstrap, model
from swarm_operator.cluster import user as cluster

__all__ = [
    "DETACH_KEY",
    "ConsoleError",
    "Swarm",
    "attach",
    "refuse_if_suspended",
    "format_status",
    "load_swarm",
    "logs",
]

#: Ctrl-] — telnet's and ``docker attach``'s escape: tmux (prefix Ctrl-b) and Claude Code leave it alone.
DETACH_KEY = b"\x1d"
_KUBE_TIMEOUT = (5, 15)  # (connect, read) seconds for every Kubernetes call


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


# ----- Kubernetes side ----------------------------------------------------------------------------
def kube_client(kubeconfig: str | None = None, context: str | None = None) -> cluster.ApiClient:
    """A client for the user's current (or named) kubeconfig context, in-cluster config as a fallback."""
    try:
        # retries=1: a cluster that is down should say so at once, not after a retry loop.
        return cluster.user_client(kubeconfig, context, retries=1)
    except cluster.KubeconfigError as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ConsoleError(
            f"no usable kubeconfig at {where} ({exc}); set KUBECONFIG "
            "or pass --kubeconfig (the playground prints its path)"
        ) from None


@contextlib.contextmanager
def _kube_errors(api: cluster.ApiClient, what: str) -> Iterator[None]:
    """Turn transport and authorisation failures of ``what`` into one actionable line."""
    try:
        yield
    except cluster.ClusterUnreachable as exc:
        raise ConsoleError(
            f"cannot reach the cluster at {api.configuration.host} "
            f"({exc.reason}); is it (or `swarm-operator dev`) running?"
        ) from None
    except cluster.ClusterError as exc:
        if exc.status in (401, 403):
            raise ConsoleError(
                f"the cluster refused to let you read {what} (HTTP {exc.status}); "
                "check your kubeconfig's user and its RBAC"
            ) from None
        if exc.status == 0:
            raise ConsoleError(
                f"cannot reach the cluster at {api.configuration.host}: {exc.reason}"
            ) from None
        raise


def load_swarm(name: str, namespace: str, *, kubeconfig: str | None = None) -> Swarm:
    """Read the resource ``namespace/name``; a missing one is a :class:`ConsoleError`."""
    api = kube_client(kubeconfig)
    with _kube_errors(api, f"swarm {namespace}/{name}"):
        try:
            body = cluster.get_swarm(api, namespace, name, timeout=_KUBE_TIMEOUT)
        except cluster.ClusterError as exc:
            if exc.status != 404:
                raise
            raise ConsoleError(
                f"swarm {namespace}/{name} not found; list them with "
                f"`kubectl get swarm -n {namespace}` (or -A)"
            ) from None
    return Swarm(api=api, body=body)


def events(swarm: Swarm, limit: int = 8) -> list[dict[str, Any]]:
    """The resource's most recent Events, oldest first (as ``kubectl describe`` shows them)."""
    with _kube_errors(swarm.api, f"the Events of {swarm.namespace}/{swarm.name}"):
        found = cluster.list_events(swarm.api, swarm.namespace, swarm.name, timeout=_KUBE_TIMEOUT)
    mine = [
        e
        for e in found
        if e.involved_object is not None
        and e.involved_object.name == swarm.name
        and e.involved_object.uid in (None, swarm.uid)
    ]
    mine.sort(key=lambda e: _event_time(e) or datetime.min.replace(tzinfo=UTC))
    return [
        {
            "time": _event_time(e),
            "type": e.type or "",
            "reason": e.reason or "",
            "message": (e.message or "").strip(),
            "count": e.count or 1,
        }
        for e in mine[-limit:]
    ]


def _event_time(event: Any) -> datetime | None:
    for value in (
        event.last_timestamp,
        event.event_time,
        event.first_timestamp,
        event.metadata.creation_timestamp if event.metadata else None,
    ):
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def api_key(swarm: Swarm) -> str:
    """The E2B API key the operator uses for this resource: its own Secret ref, or the default one.

    The default Secret's place comes from the same ``SWARM_*`` settings the operator reads, so a
    user who configured the operator differently can point this command at it the same way.
    """
    from swarm_operator.config import Settings, SettingsError
    from swarm_operator.secrets import SecretKeyRef, api_key_ref

    raw = ((swarm.body.get("spec") or {}).get("e2b") or {}).get("apiKeySecretRef")
    own = SecretKeyRef(swarm.namespace, str(raw["name"]), str(raw.get("key") or "api-key")) if raw else None
    try:
        where = api_key_ref(swarm.namespace, own, Settings.from_env())
    except SettingsError as exc:
        raise ConsoleError(f"bad setting: {exc}") from None
    namespace, name, key = where.namespace, where.name, where.key
    with _kube_errors(swarm.api, f"Secret {namespace}/{name}"):
        try:
            secret = cluster.read_secret(swarm.api, namespace, name, timeout=_KUBE_TIMEOUT)
        except cluster.ClusterError as exc:
            if exc.status != 404:
                raise
            raise ConsoleError(
                f"Secret {namespace}/{name} with the E2B API key not found; create it: kubectl create "
                f"secret generic {name} -n {namespace} --from-literal={key}=<your E2B API key>"
            ) from None
    value = (secret.data or {}).get(key)
    if value is None:
        raise ConsoleError(f"Secret {namespace}/{name} has no key {key!r}; add the E2B API key under it")
    return base64.b64decode(value).decode().strip()


# ----- status -------------------------------------------------------------------------------------
def format_status(swarm: Swarm, recent: Sequence[Mapping[str, Any]], now: datetime | None = None) -> str:
    """A ``kubectl describe``-like page: summary, sandbox, health, agents, conditions, steps, Events."""
    now = now or datetime.now(UTC)
    status = swarm.status
    agents = status.get("agents") or {}
    sandbox = status.get("sandbox") or {}
    health = status.get("health") or {}
    steps = (status.get("metrics") or {}).get("stepSeconds") or {}
    lines = [
        f"Name:       {swarm.namespace}/{swarm.name}",
        f"Phase:      {status.get('phase') or 'Pending'}"
        + (f" — {status['message']}" if status.get("message") else ""),
        f"Agents:     {agents.get('ready', 0)}/{agents.get('desired', 0)} ready",
        f"Sandbox:    {sandbox.get('id') or '-'}"
        + (f"  (template {sandbox['template']})" if sandbox.get("template") else ""),
        f"Started:    {_when(sandbox.get('startedAt'), now)}",
        f"Expires:    {_when(sandbox.get('expiresAt'), now)}",
        f"Health:     {health.get('status', 'Unknown')}"
        + (f", last probe {_when(health.get('lastProbeTime'), now)}" if health.get("lastProbeTime") else "")
        + (
            f", {health['consecutiveFailures']} failures in a row"
            if health.get("consecutiveFailures")
            else ""
        )
        + (f" — {health['reason']}" if health.get("reason") else ""),
        f"Cost:       {_cost(status.get('cost'), now)}",
        *model.progress_lines(status.get("progress"), now, task=status.get("task")),  # + a blank line
    ]
    items = agents.get("items") or []
    lines += (
        _table(
            ["AGENT", "PANE", "STATE", "RESTARTS"],
            [
                [
                    f"agent-{i.get('id')}",
                    i.get("pane") or "-",
                    i.get("state") or "Unknown",
                    str(i.get("restarts", 0)),
                ]
                for i in items
            ],
        )
        if items
        else ["Agents: none reported yet"]
    )
    lines.append("")
    conditions = status.get("conditions") or []
    if conditions:
        lines += _table(
            ["CONDITION", "STATUS", "REASON", "SINCE", "MESSAGE"],
            [
                [
                    c.get("type", ""),
                    c.get("status", ""),
                    c.get("reason", ""),
                    _ago(c.get("lastTransitionTime"), now),
                    c.get("message", ""),
                ]
                for c in conditions
            ],
        )
        lines.append("")
    lines.append("Steps:      " + (", ".join(f"{k} {float(v):.2f}s" for k, v in steps.items()) or "-"))
    lines.append("")
    if recent:
        lines += _table(
            ["AGE", "TYPE", "REASON", "MESSAGE"],
            [
                [
                    _ago(e["time"], now),
                    e["type"],
                    e["reason"],
                    e["message"] + (f" (x{e['count']})" if e["count"] > 1 else ""),
                ]
                for e in recent
            ],
        )
    else:
        lines.append("Events: none")
    return "\n".join(line.rstrip() for line in lines)


def _cost(ledger: Any, now: datetime) -> str:
    """Spend and rate as of ``now``: the written ledger (status.cost) extrapolated at its rate, the
    way the operator's metrics and budget checks see it between two status writes."""
    from pydantic import ValidationError

    from swarm_operator.cost import estimate
    from swarm_operator.model import CostStatus

    if not ledger:
        return "-"
    try:
        figures = estimate(CostStatus.model_validate(ledger), now)
    except (ValidationError, ValueError):
        return "unreadable status.cost"
    size = f", {figures.vcpu} vCPU / {figures.memory_mib} MiB" if figures.vcpu is not None else ""
    return (
        f"${figures.estimated_usd:.4f} so far, ${figures.rate_usd_per_hour:.4f}/hour now "
        f"({figures.state.lower()}{size}); {_span(figures.sandbox_seconds)} running, "
        f"{_span(figures.paused_seconds)} paused"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False))
        for row in [header, *rows]
    ]


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _span(seconds: float) -> str:
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _ago(value: Any, now: datetime) -> str:
    moment = _parse_time(value)
    return "-" if moment is None else _span((now - moment).total_seconds())


def _when(value: Any, now: datetime) -> str:
    moment = _parse_time(value)
    if moment is None:
        return "-"
    delta = (moment - now).total_seconds()
    relative = f"in {_span(delta)}" if delta >= 0 else f"{_span(delta)} ago"
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')} ({relative})"


# ----- the sandbox side ---------------------------------------------------------------------------
_E2B_CONTROL_TIMEOUT = 15.0  # seconds for one control-plane call (get_info)


def _suspended(swarm: Swarm) -> str:
    """``resume`` advice if the resource says it is (or is being) suspended, else ``""``."""
    status = swarm.status
    conditions = status.get("conditions") or []
    if (
        status.get("phase") == "Suspended"
        or any(c.get("type") == "Suspended" and c.get("status") == "True" for c in conditions)
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
    with _e2b_errors(sandbox_id):
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
    with _e2b_errors(sandbox_id):
        return connect_sync(sandbox_id, key)


@contextlib.contextmanager
def _e2b_errors(sandbox_id: str) -> Iterator[None]:
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
        raise ConsoleError(f"E2B: {_first_line(exc)}") from None
    except OSError as exc:
        url = os.environ.get("E2B_API_URL", "https://api.e2b.app")
        raise ConsoleError(f"cannot reach E2B at {url} ({_first_line(exc)})") from None


def _logs_script(swarm: Swarm, follow: bool, lines: int) -> str:
    """Find claudeswarm's ``agent_messages.log`` and print (or follow) it.

    claudeswarm keeps the log in its project root: ``$CLAUDESWARM_ROOT``, else the directory the
    agents work in (where discovery ran). Before the first message there is no log; then the panes'
    recent output is shown instead, and ``follow`` waits for the log to appear (``tail -F``).
    """
    s, t = shlex.quote(swarm.socket), shlex.quote("=" + swarm.session)
    show_log = f'exec tail -n {lines} -F "$log"' if follow else f'tail -n {lines} "$log"; exit 0'
    then = f'exec tail -n {lines} -F "$log" 2>/dev/null' if follow else "exit 0"
    return f"""
dir=$(tmux -L {s} display-message -p -t {t}: '#{{pane_current_path}}' 2>/dev/null) || dir=
log=${{CLAUDESWARM_ROOT:-${{dir:-$HOME}}}}/agent_messages.log
if [ -f "$log" ]; then {show_log}; fi
echo "(no coordinator messages yet in $log; the agents' panes show:)"
for p in $(tmux -L {s} list-panes -s -t {t} -F '#{{pane_id}}' 2>/dev/null); do
    echo "==> pane $p <=="
    tmux -L {s} capture-pane -p -J -t "$p" -S -{lines} | grep -v '^$' || true
done
{then}
"""


def logs(
    swarm: Swarm, *, follow: bool = False, lines: int = 200, out: Callable[[str], None] | None = None
) -> int:
    """Print the coordinator's message log; with ``follow`` keep printing until Ctrl-C (exit 0)."""
    write = out or _write_stdout
    sandbox = connect(swarm)
    with _e2b_errors(swarm.sandbox_id):
        if not follow:
            result = sandbox.commands.run(_logs_script(swarm, False, lines), timeout=60)
            write(result.stdout)
            return 0
        handle = sandbox.commands.run(_logs_script(swarm, True, lines), background=True, timeout=0)
    # The SDK blocks in native code between chunks, where Ctrl-C cannot reach Python: wait for the
    # stream in a thread, and for the end (or Ctrl-C) here.
    ended = threading.Event()

    def pump() -> None:
        with contextlib.suppress(Exception):
            handle.wait(on_stdout=write, on_stderr=write)  # the sync SDK calls back only from wait()
        ended.set()

    threading.Thread(target=pump, name="swarm-logs", daemon=True).start()
    try:
        while not ended.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(Exception):
            handle.kill()
    return 0


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def attach(
    swarm: Swarm,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    detach_key: bytes = DETACH_KEY,
) -> int:
    """Join the swarm's tmux session through an E2B PTY until the detach key or the session ends.

    The local terminal is put in raw mode so every key (Ctrl-C, the tmux prefix, arrows) reaches the
    panes; the window size follows SIGWINCH. Returns 0 on detach, else the remote client's exit code.
    """
    from swarm_operator.backend import pty_size, sdk_errors

    errors = sdk_errors()
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    in_fd, out_fd = stdin.fileno(), stdout.fileno()
    sandbox = connect(swarm)

    def size() -> Any:
        try:
            cols, rows = os.get_terminal_size(out_fd)
        except OSError:
            cols, rows = 80, 24
        return pty_size(rows, cols)

    with _e2b_errors(swarm.sandbox_id):
        try:
            handle = sandbox.pty.create(
                size(), timeout=0, envs={"TERM": os.environ.get("TERM", "xterm-256color")}
            )
        except errors.sandbox as exc:
            if "unimplemented" in str(exc).lower() or "not emulated" in str(exc).lower():
                raise ConsoleError(
                    f"this E2B endpoint does not offer terminals (PTY): {_first_line(exc)}"
                ) from None
            raise
    # ``exec``: when tmux leaves (detach, session gone) the PTY ends with tmux's exit status.
    attach_cmd = (
        f"exec tmux -L {shlex.quote(swarm.socket)} attach-session -t {shlex.quote('=' + swarm.session)}\n"
    )
    sandbox.pty.send_stdin(handle.pid, attach_cmd.encode())

    ended = threading.Event()
    result: dict[str, int] = {}

    def show(chunk: bytes) -> None:
        stdout.write(chunk)
        stdout.flush()

    def pump() -> None:
        try:
            handle.wait(on_pty=show)
            result["exit"] = 0
        except errors.command_exit as exc:
            result["exit"] = getattr(exc, "exit_code", None) or 1
        except Exception:  # the stream broke (sandbox gone, network): report failure, not a hang
            result["exit"] = 1
        finally:
            ended.set()

    resized = threading.Event()
    previous_winch = (
        signal.signal(signal.SIGWINCH, lambda *_: resized.set())
        if threading.current_thread() is threading.main_thread()
        else None
    )
    reader = threading.Thread(target=pump, name="swarm-attach-output", daemon=True)
    reader.start()
    status = 0
    with _raw_terminal(in_fd):
        try:
            while not ended.is_set():
                if resized.is_set():
                    resized.clear()
                    with contextlib.suppress(Exception):
                        sandbox.pty.resize(handle.pid, size())
                ready, _, _ = select.select([in_fd], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(in_fd, 4096)
                if not data:  # our stdin closed: behave as a detach
                    break
                head, key, _ = data.partition(detach_key)
                if head:
                    sandbox.pty.send_stdin(handle.pid, head)
                if key:
                    break
            else:
                status = result.get("exit", 0)
        finally:
            if previous_winch is not None:
                signal.signal(signal.SIGWINCH, previous_winch)
            if not ended.is_set():
                with contextlib.suppress(Exception):
                    handle.kill()  # ends only our tmux client: the session and its agents carry on
    stdout.write(b"\r\n")
    stdout.flush()
    return status


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode for the duration, restored however we leave (so a crash never leaves a dead tty)."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def status_json(swarm: Swarm) -> str:
    return json.dumps(swarm.status, indent=2, sort_keys=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
