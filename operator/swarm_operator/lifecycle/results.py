"""Results out, never lost: the workspace pushed to ``spec.workspace.push.branch``.

The agents' work lives in the sandbox's workspace, and every end of a sandbox destroys it. So the
operator pushes it (uncommitted changes first, as a work-in-progress commit made through a private
index: see ``bootstrap/push.sh``):

* **periodically**, every ``intervalSeconds``, from the health daemon's tick (:func:`push_due`):
  no extra call beyond the push itself;
* **before every end the operator controls**: a delete (:func:`before_delete`), every kill through
  ``sandbox.kill_and_record`` (TTL, budget ``Delete``, quarantine: :func:`push_then_kill`), a
  template/egress/lifetime hand-over (``handover.replace``, before the new sandbox is made: it
  starts from the pushed commit, :func:`with_start`) and a pause (``sandbox.pause``).

Each push is one command, retried (:data:`PUSH_ATTEMPTS`) within ``SWARM_DELETE_TIMEOUT_SECONDS``;
the end it precedes goes ahead after that bound whatever happened, and a failure is a Warning
Event (``PushFailed``) naming what is lost, plus ``status.workspace.push.error``. The credential
goes to a sandbox only after its identity was verified (the same rule as every secret), on stdin.

Other code pushes with :func:`push` (``book``, ``backend``, sandbox id, ``why``): it never raises
for a failed push, and returns the report (None when no push is configured or allowed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from swarm_operator import bootstrap, logs
from swarm_operator.backend import NO_RETRY, BackendError, SandboxBackend, SandboxInfo, SandboxNotFound
from swarm_operator.conditions import Reason
from swarm_operator.config import Settings
from swarm_operator.lifecycle.runtime import ResourceRef, Runtime
from swarm_operator.lifecycle.status import StatusBook
from swarm_operator.model import (
    PushStatus,
    SwarmSandboxSpec,
    SwarmSandboxStatus,
    WorkspaceSpec,
    WorkspaceStatus,
)
from swarm_operator.secrets import SecretKeyRef, SecretNotFound

logger = logging.getLogger("swarm_operator.lifecycle")

#: Tries of one push (a failed one waits 1 s, then 2 s), all within SWARM_DELETE_TIMEOUT_SECONDS.
PUSH_ATTEMPTS = 3
#: Time kept for the push before a ttlSeconds end, on top of one lease renewal interval.
TTL_PUSH_MARGIN_S = 15.0
#: Where the workspace is when spec.workspace.path is unset (lifecycle.plan's default).
_DEFAULT_PATH = "workspace"
#: Why a kill through kill_and_record happens, in the words of a push's Event.
_KILL_WHY = {
    Reason.SANDBOX_EXPIRED: "before the sandbox is killed at the end of its lifetime (ttlSeconds)",
    Reason.BUDGET_EXCEEDED: "before the sandbox is killed by its budget (action Delete)",
    Reason.SANDBOX_QUARANTINED: "before the quarantined sandbox is killed",
}


def ttl_margin(spec: SwarmSandboxSpec, settings: Settings) -> float:
    """How long before its ttlSeconds the operator ends a pushing swarm's sandbox itself: E2B ends
    it at the ttl whatever happens (the lease never reaches past it), so the push must run before,
    and the lease renewal that ends it comes at most one renewal interval late. Without a push: 0."""
    if spec.workspace is None or spec.workspace.push is None:
        return 0.0
    return settings.lease_renew_seconds * 1.1 + TTL_PUSH_MARGIN_S


def remember(runtime: Runtime, uid: str, spec: SwarmSandboxSpec) -> None:
    """Keep the workspace spec where the kill and pause paths (which get no spec) find it."""
    runtime.remember(uid).workspace = spec.workspace


def with_start(plan: bootstrap.BootstrapPlan, book: StatusBook) -> bootstrap.BootstrapPlan:
    """The setup plan, told to clone a *new* workspace at the commit pushed last (a rerun in a
    sandbox whose workspace exists never moves it): a new sandbox carries on the agents' work."""
    pushed = book.status.workspace.push if book.status.workspace else None
    workspace = book.runtime.remember(book.ref.uid).workspace
    if pushed is None or not pushed.commit or workspace is None or workspace.push is None:
        return plan
    if pushed.branch != workspace.push.branch or not plan.workspace_repo:
        return plan
    return plan.model_copy(update={"workspace_start": pushed.commit})


async def push(
    book: StatusBook, backend: SandboxBackend, sandbox_id: str, *, why: str, periodic: bool = False
) -> bootstrap.PushReport | None:
    """Push the sandbox's workspace now, retried within SWARM_DELETE_TIMEOUT_SECONDS; record the
    outcome in ``status.workspace.push`` (not committed: the caller commits) and, unless
    ``periodic``, in an Event. None when no push is configured, or the sandbox is not verified
    (it gets no credential). Never raises: whatever follows (a kill, a pause) goes ahead."""
    runtime, ref = book.runtime, book.ref
    memory = runtime.remember(ref.uid)
    workspace = memory.workspace
    if workspace is None or workspace.push is None:
        return None
    if memory.verified != sandbox_id:
        logger.info("no push: sandbox %s is not verified", sandbox_id, extra=ref.log_extra)
        return None
    started = time.monotonic()
    report, error = await _attempts(book, backend, sandbox_id, workspace, why)
    book.step("push", time.monotonic() - started)
    _record(book, workspace, sandbox_id, report, error, why=why, periodic=periodic)
    return report


async def before_replace(book: StatusBook) -> None:
    """The push before a replacement (template/egress change, lifetime hand-over) creates the new
    sandbox: from the one status names, which keeps running the agents until the new one is Ready.
    The new sandbox's workspace starts from the commit pushed (:func:`with_start`)."""
    memory, sandbox = book.runtime.remember(book.ref.uid), book.status.sandbox
    if memory.api_key is not None and sandbox is not None and sandbox.id:
        backend = book.runtime.backends.for_key(memory.api_key)
        await push(book, backend, sandbox.id, why="before the agents move to a new sandbox")


async def push_then_kill(book: StatusBook, backend: SandboxBackend, sandbox_id: str, reason: Reason) -> None:
    """The kill of ``sandbox.kill_and_record``, after a bounded push of the workspace."""
    await push(
        book, backend, sandbox_id, why=_KILL_WHY.get(reason, f"before the sandbox is killed ({reason})")
    )
    await backend.kill(sandbox_id)


async def push_due(
    book: StatusBook, spec: SwarmSandboxSpec, backend: SandboxBackend, sandbox_id: str
) -> None:
    """The periodic push, from the health daemon's tick: due once ``intervalSeconds`` passed since
    the last attempt (or the sandbox's start). Commits status when the push changed it."""
    remember(book.runtime, book.ref.uid, spec)
    target = spec.workspace.push if spec.workspace else None
    if target is None:
        return
    last = book.status.workspace.push if book.status.workspace else None
    sandbox = book.status.sandbox
    times = [t for t in (last.time if last else None, last.failed_at if last else None) if t is not None]
    since = max(times) if times else (sandbox.started_at if sandbox else None)
    if since is not None and datetime.now(UTC) - since < timedelta(seconds=target.interval_seconds):
        return
    await push(book, backend, sandbox_id, why="(periodic)", periodic=True)
    await book.commit()


async def before_delete(
    ref: ResourceRef,
    spec: object,
    status: SwarmSandboxStatus,
    runtime: Runtime,
    backend: SandboxBackend,
    tagged: list[SandboxInfo],
    known_id: str | None,
) -> None:
    """The delete's push of the tracked sandbox (``known_id``, if E2B lists it among the resource's
    ``tagged`` ones), before its teardown: bounded, announced, and never in the way (the teardown
    follows whatever happened). A sandbox not verified by this process (a restart) is verified
    first: the credential goes to no other. ``spec``: a spec the model refused pushes nothing."""
    tracked = [s for s in tagged if s.id == known_id]
    if not isinstance(spec, SwarmSandboxSpec) or not tracked:
        return
    if spec.workspace is None or spec.workspace.push is None:
        return
    book = StatusBook(ref, status, runtime)
    remember(runtime, ref.uid, spec)
    sandbox = tracked[0]
    try:
        # The identity check and the push's own bound, plus slack for the status write.
        await asyncio.wait_for(
            _delete_push(book, backend, sandbox), runtime.settings.delete_timeout_seconds + 15
        )
    except Exception as exc:  # a bound passed, the API server away: the teardown goes ahead
        logger.warning("push before delete: %r", exc, extra={**ref.log_extra, "sandbox_id": sandbox.id})
        book.event(
            "Warning",
            Reason.PUSH_FAILED,
            _lost(book, sandbox.id, f"the push before the delete failed ({exc!r})"),
        )


async def _delete_push(book: StatusBook, backend: SandboxBackend, sandbox: SandboxInfo) -> None:
    from swarm_operator.lifecycle.identity import identity_ok  # it imports this module

    if not await identity_ok(book, backend, sandbox):
        book.event(
            "Warning", Reason.PUSH_FAILED, _lost(book, sandbox.id, "the sandbox failed its identity check")
        )
        return
    await push(book, backend, sandbox.id, why="before the sandbox is deleted")
    await book.commit()


async def _attempts(
    book: StatusBook, backend: SandboxBackend, sandbox_id: str, workspace: WorkspaceSpec, why: str
) -> tuple[bootstrap.PushReport | None, str | None]:
    """Up to PUSH_ATTEMPTS runs of the push script within the bound: (report, None) once pushed
    (or nothing to push), else (last report or None, why it failed)."""
    runtime, ref = book.runtime, book.ref
    assert workspace.push is not None
    deadline = time.monotonic() + runtime.settings.delete_timeout_seconds
    try:
        stdin = bootstrap.secret_input(await _credential(ref, runtime, workspace))
    except SecretNotFound as exc:
        return None, f"{exc}; {exc.hint}"
    last = book.status.workspace.push if book.status.workspace else None
    lease = last.commit if last and last.branch == workspace.push.branch else None
    script = bootstrap.render_push(
        _plan(ref, workspace, runtime), branch=workspace.push.branch, lease=lease, why=why
    )
    report, error = None, "not attempted"
    for attempt in range(PUSH_ATTEMPTS):
        left = deadline - time.monotonic()
        if left < 1:
            break
        if attempt:
            await asyncio.sleep(min(2.0 ** (attempt - 1), left / 2))
            left = deadline - time.monotonic()
        try:
            result = await backend.run(sandbox_id, script, stdin=stdin, timeout_s=left, retry=NO_RETRY)
            report = bootstrap.parse_push(logs.REDACTOR.redact(result.stdout, ref.uid))
        except SandboxNotFound:
            return None, f"sandbox {sandbox_id} is gone"
        except (BackendError, ValueError) as exc:
            error = str(exc)
            continue
        if report.error is None:
            return report, None
        error = report.error
    return report, error


async def _credential(ref: ResourceRef, runtime: Runtime, workspace: WorkspaceSpec) -> dict[str, str]:
    assert workspace.push is not None
    secret = workspace.push.credentials_secret_ref or workspace.credentials_secret_ref
    if secret is None:
        return {}
    key = SecretKeyRef(ref.namespace, secret.name, secret.key)
    values = await runtime.secrets.read_many([key], scope=ref.uid)
    return {bootstrap.GIT_PASSWORD_ENV: values[key]}


def _plan(ref: ResourceRef, workspace: WorkspaceSpec, runtime: Runtime) -> bootstrap.BootstrapPlan:
    """Enough of a plan for the push script: the workspace's repo, path and user name."""
    return bootstrap.BootstrapPlan(
        session=bootstrap.session_name(ref.namespace, ref.name, ref.uid),
        socket=bootstrap.socket_name(ref.namespace, ref.name, ref.uid),
        agents=1,
        command="true",
        workdir=workspace.path or _DEFAULT_PATH,
        workspace_repo=workspace.repo,
        workspace_username=workspace.username,
        # One network call: most of the bound, so a silent server fails the push by name.
        git_timeout_s=max(1, int(runtime.settings.delete_timeout_seconds * 0.8)),
    )


def _record(
    book: StatusBook,
    workspace: WorkspaceSpec,
    sandbox_id: str,
    report: bootstrap.PushReport | None,
    error: str | None,
    *,
    why: str,
    periodic: bool,
) -> None:
    """status.workspace.push and the Event: a success replaces the record, a failure keeps the
    last success (its commit is what the branch still holds) beside the error."""
    assert workspace.push is not None
    branch, now = workspace.push.branch, datetime.now(UTC)
    current = book.status.workspace or WorkspaceStatus()
    last = current.push if current.push and current.push.branch == branch else PushStatus(branch=branch)
    if error is None and report is not None and report.pushed:
        record = PushStatus(branch=branch, commit=report.pushed, time=now, sandbox=sandbox_id, wip=report.wip)
        what = (
            "a WIP commit of the uncommitted changes on top of " + (report.head or "HEAD")
            if report.wip
            else "HEAD"
        )
        if not periodic:
            book.event("Normal", Reason.RESULTS_PUSHED, f"pushed {report.pushed} ({what}) to {branch} {why}")
    elif error is None:  # nothing to push (no clone yet): not a failure
        return
    else:
        message = logs.sandbox_text(error, book.ref.uid, limit=900, keep="tail")
        record = last.model_copy(update={"error": message, "failed_at": now})
        if periodic:
            book.event(
                "Warning",
                Reason.PUSH_FAILED,
                f"push to {branch} failed: {message}; retried in {workspace.push.interval_seconds}s",
            )
        else:
            book.event(
                "Warning",
                Reason.PUSH_FAILED,
                _lost(book, sandbox_id, f"push to {branch} {why} failed: {message}"),
            )
        logger.warning("push failed: %s", message, extra={**book.ref.log_extra, "sandbox_id": sandbox_id})
    book.status.workspace = current.model_copy(update={"push": record})


def _lost(book: StatusBook, sandbox_id: str, cause: str) -> str:
    """A failed push's Warning before a sandbox end: what is lost, said plainly."""
    last = book.status.workspace.push if book.status.workspace else None
    kept = f"the branch keeps {last.commit}" if last and last.commit else "nothing was ever pushed"
    return (
        f"{cause}; the sandbox ends anyway after SWARM_DELETE_TIMEOUT_SECONDS "
        f"({book.runtime.settings.delete_timeout_seconds:g}s): DATA LOSS RISK, work in sandbox {sandbox_id} "
        f"not pushed before is lost ({kept})"
    )
