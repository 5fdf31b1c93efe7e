"""What a person does to one swarm beyond looking at it: ``pull`` its workspace, ``suspend``, ``resume``.

Shared by ``swarm-operator`` and the ``kubectl swarm`` plugin (both parse arguments and call here). Like
:mod:`swarm_operator.console`, everything goes through the user's own kubeconfig and straight to the
sandbox, never through the operator; failures are :class:`~swarm_operator.console.ConsoleError` lines.

``suspend``/``resume`` only write the resource (``spec.suspend``): the operator pauses or resumes the
sandbox, so the commands work the same from a terminal, a script or Argo CD's resource actions
(charts/swarm-operator/docs/actions/) and no second pause path exists.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from swarm_operator.cluster import user as cluster
from swarm_operator.console import (
    ConsoleError,
    Swarm,
    connect,
    e2b_errors,
    kube_errors,
    refuse_if_suspended,
)
from swarm_operator.names import RESUME_ANNOTATION

__all__ = ["Pulled", "pull", "resume", "suspend"]

_KUBE_TIMEOUT = (5, 15)  # (connect, read) seconds for every Kubernetes call
#: Where the operator clones the workspace when spec.workspace.path is unset (lifecycle.plan).
_DEFAULT_WORKSPACE_PATH = "workspace"
#: Bound on ``git bundle create`` in the sandbox, and on downloading the bundle.
BUNDLE_TIMEOUT_S = 300.0
DOWNLOAD_TIMEOUT_S = 600.0
_PULLABLE_PHASES = ("Ready", "Degraded")  # a sandbox with the workspace cloned, running
_SCRATCH = re.compile(r"^\.swarm-pull\.[A-Za-z0-9]+/workspace\.bundle$")


# ----- suspend / resume ---------------------------------------------------------------------------
def suspend(swarm: Swarm) -> str:
    """Set ``spec.suspend: true``: the operator pauses the sandbox (E2B keeps memory and files, the
    meter stops). Returns what to tell the user."""
    if (swarm.body.get("spec") or {}).get("suspend") is True:
        return f"swarm {swarm.namespace}/{swarm.name} is already suspended (spec.suspend is true)"
    _patch(swarm, {"spec": {"suspend": True}})
    return f"suspend requested for {swarm.namespace}/{swarm.name}: the operator pauses its sandbox"


def resume(swarm: Swarm, now: datetime | None = None) -> str:
    """Set ``spec.suspend: false`` and ask the operator to lift an idle pause (``spec.idle``), in one
    merge patch: the annotation is what the operator watches for idleness, the spec for suspension.
    A budget's pause holds (the limit must be raised): the answer says so."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    patch: dict[str, Any] = {"metadata": {"annotations": {RESUME_ANNOTATION: stamp}}}
    if (swarm.body.get("spec") or {}).get("suspend") is True:
        patch["spec"] = {"suspend": False}
    _patch(swarm, patch)
    paused = next((c for c in swarm.observed.status.conditions if c.type == "Suspended"), None)
    if paused and paused.status == "True" and paused.reason not in ("Idle", "Suspended"):
        return (
            f"resume requested for {swarm.namespace}/{swarm.name}, but it is paused for "
            f"{paused.reason}: {paused.message}"
        )
    return f"resume requested for {swarm.namespace}/{swarm.name}"


def _patch(swarm: Swarm, patch: dict[str, Any]) -> None:
    with kube_errors(swarm.api, f"swarm {swarm.namespace}/{swarm.name}"):
        cluster.patch_swarm(swarm.api, swarm.namespace, swarm.name, patch, timeout=_KUBE_TIMEOUT)


# ----- pull ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pulled:
    """A verified bundle of the workspace: where it was written, the sandbox's HEAD, its size."""

    path: Path
    head: str
    size: int


def pull(swarm: Swarm, out_dir: Path, *, user: str | None = None) -> Pulled:
    """Download the swarm's workspace — every ref, and HEAD — as a git bundle ``out_dir/NAME.bundle``.

    No push configuration is needed: ``git bundle create --all`` runs in the sandbox (one command, as
    the agents' account, without their shell startup files, bounded by :data:`BUNDLE_TIMEOUT_S`), the
    file comes back through envd's file API (bounded by :data:`DOWNLOAD_TIMEOUT_S`), is removed from
    the sandbox, and is checked whole (:func:`_verify`) before it replaces ``NAME.bundle``. A
    suspended swarm or a paused sandbox is refused: connecting would resume it behind the operator.
    """
    workdir = _workdir(swarm)
    sandbox = connect(swarm)  # refuses a suspended swarm or a paused sandbox, without resuming it
    account = user or _sandbox_user()
    from swarm_operator.backend import download_file, run_script

    out_dir.mkdir(parents=True, exist_ok=True)
    part = out_dir / f".{swarm.name}.bundle.part"
    try:
        with e2b_errors(swarm.sandbox_id):
            made = run_script(sandbox, _bundle_script(workdir), user=account, timeout=BUNDLE_TIMEOUT_S)
            head, remote = _made(swarm, workdir, made)
            try:
                size = download_file(sandbox, remote, part, user=account, timeout=DOWNLOAD_TIMEOUT_S)
            finally:  # best effort: a failure here must not hide the download's own
                with contextlib.suppress(Exception):
                    scratch = shlex.quote(remote.split("/")[0])
                    run_script(sandbox, f"rm -rf -- {scratch}", user=account, timeout=30)
        _verify(part, head)
    except BaseException:  # Ctrl-C included: no half-downloaded file is left behind
        part.unlink(missing_ok=True)
        raise
    final = out_dir / f"{swarm.name}.bundle"
    part.replace(final)
    return Pulled(path=final, head=head, size=size)


def _workdir(swarm: Swarm) -> str:
    """The workspace's path in the sandbox, once the resource says the sandbox is up with it."""
    spec, observed = swarm.body.get("spec") or {}, swarm.observed
    where = f"{swarm.namespace}/{swarm.name}"
    if not spec.get("workspace"):
        raise ConsoleError(
            f"swarm {where} has no spec.workspace: there is no repository to pull "
            "(the agents' work is only kept in a workspace)"
        )
    refuse_if_suspended(swarm)  # before "not Ready": a suspended swarm says how to resume it
    phase, workspace = observed.phase, observed.status.workspace
    if phase not in _PULLABLE_PHASES or not (workspace and workspace.commit):
        raise ConsoleError(
            f"swarm {where} is not Ready (phase {phase}), so its workspace is not there to pull; wait: "
            f"kubectl wait --for=condition=Ready swarm/{swarm.name} -n {swarm.namespace}"
        )
    return str(spec["workspace"].get("path") or _DEFAULT_WORKSPACE_PATH)


def _sandbox_user() -> str:
    from swarm_operator.config import Settings, SettingsError

    try:
        return Settings.from_env().sandbox_user
    except SettingsError as exc:
        raise ConsoleError(f"bad setting: {exc}") from None


def _bundle_script(workdir: str) -> str:
    """Bundle every ref of the repository at ``workdir`` (relative: to the home the command starts
    in) into a scratch directory in that home; print ``HEAD SIZE PATH`` (PATH relative to the home,
    as envd's file API takes it). Exit 3: no repository; 4: no commit; 5/6: bundling failed."""
    return f"""ws={shlex.quote(workdir)}
git -C "$ws" rev-parse --git-dir >/dev/null 2>&1 || {{ echo "no git repository at $ws" >&2; exit 3; }}
head=$(git -C "$ws" rev-parse --verify -q HEAD) || {{ echo "no commit in $ws yet" >&2; exit 4; }}
d=$(mktemp -d .swarm-pull.XXXXXXXX) || exit 5
if ! git -C "$ws" bundle create "$HOME/$d/workspace.bundle" --all 2>"$d/err" >/dev/null; then
    tail -c 1000 "$d/err" >&2; rm -rf -- "$d"; exit 6
fi
printf '%s %s %s\\n' "$head" "$(wc -c <"$d/workspace.bundle")" "$d/workspace.bundle"
"""


def _made(swarm: Swarm, workdir: str, made: Any) -> tuple[str, str]:
    """(HEAD, path in the sandbox) from the bundle script's answer, or a :class:`ConsoleError`."""
    where = f"swarm {swarm.namespace}/{swarm.name}"
    fields = made.stdout.split()
    if made.exit_code == 3:
        raise ConsoleError(f"{where}: no git repository at {workdir} in its sandbox")
    if made.exit_code == 4:
        raise ConsoleError(f"{where}: the workspace at {workdir} has no commit yet; nothing to pull")
    if made.exit_code != 0 or len(fields) != 3 or not _SCRATCH.match(fields[2]):
        detail = (made.stderr.strip().splitlines() or [f"exit {made.exit_code}"])[-1][:300]
        raise ConsoleError(f"{where}: git bundle create failed in the sandbox: {detail}")
    return fields[0], fields[2]


def _verify(bundle: Path, head: str) -> None:
    """The bundle is whole and its HEAD is ``head``: ``git bundle verify`` (header, prerequisites) and
    ``git bundle unbundle`` into a scratch repository (index-pack checks every object and the pack's
    checksum: a transfer cut short does not pass), then HEAD's commit is read back from it."""
    path = str(bundle.resolve())
    with tempfile.TemporaryDirectory(prefix="swarm-pull-") as scratch:
        git = ["git", "-C", scratch]
        subprocess.run([*git, "init", "-q", "--bare"], check=True, capture_output=True, timeout=30)
        for step in (["bundle", "verify", "-q", path], ["bundle", "unbundle", path]):
            checked = subprocess.run([*git, *step], capture_output=True, text=True, timeout=600)
            if checked.returncode != 0:
                reason = (checked.stderr.strip().splitlines() or ["invalid"])[-1]
                raise ConsoleError(f"the downloaded bundle does not verify ({reason}); try again")
        heads = checked.stdout.splitlines()
        read = subprocess.run([*git, "cat-file", "-e", f"{head}^{{commit}}"], capture_output=True, timeout=30)
    if f"{head} HEAD" not in heads or read.returncode != 0:
        raise ConsoleError(f"the downloaded bundle's HEAD is not the sandbox's ({head}); try again")
