"""One ``swarm-operator dev`` session: start the children, apply the manifests, show progress,
and tear everything down again however the session ends (see the package docstring for the layers
of clean-up).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import yaml

from swarm_operator.cluster import user as cluster
from swarm_operator.model import COORDINATOR_PIN

from ._children import Child, die_with_parent, stragglers
from ._progress import progress_row, render_table

__all__ = ["MARKER_VAR", "Playground", "PlaygroundError", "default_manifests"]

OPERATOR_NAMESPACE = "swarm-system"
#: Set in every child's environment to the playground's temp dir; not ``SWARM_*``, which the operator
#: reserves for its settings (and refuses when unknown).
MARKER_VAR = "SWARMOP_PLAYGROUND"
_STARTUP_TIMEOUT = 30.0
_DELETE_TIMEOUT = 40.0
_STOP_TIMEOUT = 15.0


class PlaygroundError(Exception):
    """The playground could not start; ``str()`` is one line for the user."""


class _Stop(Exception):
    """Raised by SIGTERM/SIGHUP handlers: leave the watch loop and clean up, as on Ctrl-C."""


#: The examples the playground applies by default: the ones that run offline. (full.yaml clones a
#: repository and installs a pinned coordinator from the network; argocd-application.yaml is for a
#: cluster running Argo CD.) Pass others with -f.
PLAYGROUND_EXAMPLES = ("secrets.yaml", "minimal.yaml")


def default_manifests() -> list[Path]:
    """The playground examples of the checkout we run from (or the working directory), Secrets first."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        found = [root / "examples" / name for name in PLAYGROUND_EXAMPLES]
        if all(path.is_file() for path in found):
            return found
    raise PlaygroundError("no examples/ directory here; pass manifests with -f FILE")


@dataclass
class Playground:
    """One ``dev`` session. :meth:`run` blocks until Ctrl-C and always cleans up."""

    manifests: Sequence[Path]
    e2b: str = "emulator"  # or "real"
    keep_temp: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    interval: float = 0.5

    _dir: Path = field(init=False)
    _children: list[Child] = field(init=False, default_factory=list)
    _api: Any = field(init=False, default=None)

    def run(self) -> int:
        """Start, show progress until Ctrl-C (or SIGTERM/SIGHUP), tear down; returns the exit code."""
        if self.e2b == "real" and not os.environ.get("E2B_API_KEY"):
            raise PlaygroundError("--e2b real needs E2B_API_KEY set to your E2B API key")
        documents = self._load(self.manifests)
        self._dir = Path(tempfile.mkdtemp(prefix="swarm-dev-"))
        previous = {sig: signal.signal(sig, self._raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
        status = 0
        try:
            self._start(documents)
            status = self._watch()
        except (KeyboardInterrupt, _Stop):
            status = 0
        except PlaygroundError as exc:
            self._say(f"swarm-operator dev: {exc}")
            status = 1
        finally:
            signal.signal(signal.SIGINT, self._hurry)
            try:
                self._teardown()
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        return status

    # ----- start-up -------------------------------------------------------------------------------
    @staticmethod
    def _load(paths: Sequence[Path]) -> list[dict[str, Any]]:
        documents: list[dict[str, Any]] = []
        for path in paths:
            try:
                documents += [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
            except (OSError, yaml.YAMLError) as exc:
                raise PlaygroundError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
        if not documents:
            raise PlaygroundError("the manifests hold no objects")
        return documents

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[MARKER_VAR] = str(self._dir)
        env["TMPDIR"] = str(self._dir / "tmp")  # emulator sandboxes' homes land inside our dir too
        return env

    def _spawn(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> Child:
        log = self._dir / f"{name}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "swarm_operator", *args],
                env=dict(env),
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        child = Child(name, proc, log)
        self._children.append(child)
        return child

    def _await_line(self, child: Child, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            match = re.search(pattern, child.log.read_text(errors="replace"))
            if match:
                return match
            if child.proc.poll() is not None:
                raise PlaygroundError(f"the {child.name} exited at start:\n{child.tail()}")
            time.sleep(0.05)
        raise PlaygroundError(
            f"the {child.name} did not start within {_STARTUP_TIMEOUT:.0f}s:\n{child.tail()}"
        )

    def _start(self, documents: list[dict[str, Any]]) -> None:
        (self._dir / "tmp").mkdir()
        home = self._sandbox_home()
        kubeconfig = self._dir / "kubeconfig"
        self._say(f"swarm-operator playground in {self._dir}")
        self._start_kube(kubeconfig)
        exports = {"KUBECONFIG": str(kubeconfig)}
        api_key = self._start_e2b(home, exports)
        self._api = self._client(kubeconfig)
        self._ensure_namespace(OPERATOR_NAMESPACE)
        self._apply(_api_key_secret(api_key))
        self._start_operator(exports)
        env_file = self._dir / "env"
        env_file.write_text("".join(f"export {k}={v}\n" for k, v in exports.items()))
        for document in documents:
            self._apply(document)
        self._say_hints(kubeconfig, env_file)

    def _start_kube(self, kubeconfig: Path) -> None:
        kube = self._spawn(
            "kubernetes-emulator", ["emulate", "kube", "--kubeconfig", str(kubeconfig)], self._env()
        )
        kube_url = self._await_line(kube, r"listening on (\S+)").group(1)
        self._say(f"  Kubernetes API emulator  {kube_url}")

    def _start_e2b(self, home: Path, exports: dict[str, str]) -> str:
        """The E2B API key the operator gets: the user's with real E2B, else a fresh one of the
        emulator started here (its URLs added to ``exports``)."""
        if self.e2b == "real":
            self._say("  E2B                      the real service (E2B_API_KEY)")
            return os.environ["E2B_API_KEY"]
        # The demo home stands for a prebuilt template (tools on every template, identity at
        # once): opt-ins by name until the operator provisions stock `base` and retries its
        # identity check (issue 14 items 1 and 7).
        e2b = self._spawn(
            "e2b-emulator",
            [
                "emulate",
                "e2b",
                "--home-template",
                str(home),
                "--no-stock-templates",
                "--identity-delay-seconds",
                "0",
            ],
            self._env(),
        )
        e2b_url = self._await_line(e2b, r"listening on (\S+)").group(1)
        exports.update(E2B_API_URL=e2b_url, E2B_SANDBOX_URL=e2b_url)
        self._say(
            f"  E2B emulator             {e2b_url}  (sandboxes are local processes;"
            " `claude` is a demo stand-in)"
        )
        return "e2b_" + secrets.token_hex(20)

    def _start_operator(self, exports: Mapping[str, str]) -> None:
        env = {k: v for k, v in self._env().items() if not k.startswith("SWARM_") or k == MARKER_VAR}
        env.update(exports)
        env.update(
            SWARM_NAMESPACE=OPERATOR_NAMESPACE,
            SWARM_OPERATOR_ID="playground",
            SWARM_LOG_FORMAT="json",
            SWARM_METRICS_PORT="0",
            SWARM_DELETE_GRACE_SECONDS="1",
        )
        operator = self._spawn("operator", ["run", "--standalone", "--all-namespaces"], env)
        self._await_line(operator, r"operator \S+ started")
        self._say(f"  operator                 log: {operator.log}")

    def _say_hints(self, kubeconfig: Path, env_file: Path) -> None:
        self._say("")
        self._say(f"kubeconfig: {kubeconfig}")
        self._say(
            f"In another terminal:  source {env_file}   (sets KUBECONFIG"
            + (", E2B_API_URL, E2B_SANDBOX_URL)" if self.e2b != "real" else ")")
        )
        self._say(
            "  kubectl get swarm -A  ·  swarm-operator status NAME  ·  swarm-operator logs NAME -f"
            "  ·  swarm-operator attach NAME   (Ctrl-] detaches)"
        )
        self._say("Ctrl-C stops everything and removes the temp directory.")
        self._say("")

    def _sandbox_home(self) -> Path:
        """What every emulated sandbox's home starts as, like a template image: the demo ``claude``
        and ``claudeswarm`` in ``~/.local/bin`` and a ``.profile`` that puts them on PATH (commands
        run under ``bash -l``) and carries our marker into every sandbox process, for the sweep."""
        home = self._dir / "sandbox-home"
        bin_dir = home / ".local" / "bin"
        bin_dir.mkdir(parents=True)
        # The stand-ins ship with the test bed (never in the image); `dev` checked it is installed.
        for asset in resources.files("swarm_testbed").joinpath("playground", "bin").iterdir():
            target = bin_dir / asset.name
            target.write_bytes(asset.read_bytes())
            target.chmod(0o755)
        (home / ".profile").write_text(
            f'PATH="$HOME/.local/bin:$PATH"\nexport {MARKER_VAR}={shlex.quote(str(self._dir))}\n'
        )
        # The pin a prebuilt template records: the default coordinator.install is then satisfied.
        (home / ".swarm-template").mkdir()
        (home / ".swarm-template" / "coordinator").write_text(COORDINATOR_PIN)
        return home

    @staticmethod
    def _client(kubeconfig: Path) -> Any:
        return cluster.user_client(kubeconfig, in_cluster_fallback=False)

    def _ensure_namespace(self, name: str) -> None:
        try:
            cluster.create_namespace(self._api, name, timeout=10)
        except cluster.ClusterError as exc:
            if exc.status != 409:
                raise PlaygroundError(f"cannot create namespace {name}: {exc.reason}") from None

    def _apply(self, document: dict[str, Any]) -> None:
        """Create the object, or merge-patch it when it exists: ``kubectl apply`` for our purposes."""
        kind, meta = document.get("kind"), document.get("metadata") or {}
        try:
            cluster.apply(self._api, document, before_create=self._ensure_namespace)
        except cluster.UnknownKind as exc:
            raise PlaygroundError(f"the cluster does not know {exc}") from None
        except cluster.ClusterError as exc:
            raise PlaygroundError(f"cannot create {kind} {meta.get('name')}: {exc.reason}") from None

    # ----- progress -------------------------------------------------------------------------------
    def _swarms(self) -> list[dict[str, Any]]:
        return sorted(
            cluster.list_swarms(self._api, timeout=10),
            key=lambda b: (b["metadata"].get("namespace", ""), b["metadata"]["name"]),
        )

    def _watch(self) -> int:
        tty = self.out.isatty()
        drawn = 0
        last: dict[str, str] = {}
        while True:
            for child in self._children:
                if child.proc.poll() is not None:
                    raise PlaygroundError(
                        f"the {child.name} exited ({child.proc.returncode}):\n{child.tail()}"
                    )
            rows = [progress_row(body) for body in self._swarms()]
            if tty:
                table = render_table(rows)
                self.out.write((f"\x1b[{drawn}F\x1b[J" if drawn else "") + "\n".join(table) + "\n")
                self.out.flush()
                drawn = len(table)
            else:
                for row in rows:
                    line = (
                        f"{row['resource']}: phase {row['phase']}, agents {row['agents']}, "
                        f"sandbox {row['sandbox']}, steps {row['steps']}"
                    )
                    if last.get(row["resource"]) != line:
                        last[row["resource"]] = line
                        self._say(line)
            time.sleep(self.interval)

    # ----- teardown -------------------------------------------------------------------------------
    _hurried: bool = field(init=False, default=False)

    def _hurry(self, signum: int, frame: Any) -> None:
        self._hurried = True
        self._say("(hurrying: skipping the graceful waits)")

    @staticmethod
    def _raise_stop(signum: int, frame: Any) -> None:
        raise _Stop()

    def _teardown(self) -> None:
        self._say("")
        self._say("stopping: deleting the resources (the operator's finalizers kill their sandboxes)...")
        operator = next((c for c in self._children if c.name == "operator"), None)
        if self._api is not None and operator is not None and operator.proc.poll() is None:
            with contextlib.suppress(Exception):
                self._delete_all()
        for name in ("operator", "e2b-emulator", "kubernetes-emulator"):
            for child in self._children:
                if child.name == name:
                    child.stop(1.0 if self._hurried else _STOP_TIMEOUT)
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.close()
        if getattr(self, "_dir", None) is None:
            return
        left = stragglers(str(self._dir))
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if left:
            self._say(f"killed {len(left)} leftover process(es)")
        deadline = time.monotonic() + 5
        while stragglers(str(self._dir)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.keep_temp:
            self._say(f"kept {self._dir}")
        else:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._say("stopped; nothing left behind.")

    def _delete_all(self) -> None:
        for body in self._swarms():
            meta = body["metadata"]
            with contextlib.suppress(cluster.ClusterError):
                cluster.delete_swarm(self._api, meta["namespace"], meta["name"], timeout=10)
        deadline = time.monotonic() + _DELETE_TIMEOUT
        while time.monotonic() < deadline and not self._hurried:
            remaining = self._swarms()
            if not remaining:
                return
            time.sleep(0.2)
        left = [f"{b['metadata']['namespace']}/{b['metadata']['name']}" for b in self._swarms()]
        if left:
            self._say(
                f"gave up waiting for {', '.join(left)}"
                + ("; their E2B leases will expire on their own" if self.e2b == "real" else "")
            )

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def _api_key_secret(api_key: str) -> dict[str, Any]:
    """The operator's default API-key Secret, in its own namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": "e2b-api-key", "namespace": OPERATOR_NAMESPACE},
        "stringData": {"api-key": api_key},
    }
