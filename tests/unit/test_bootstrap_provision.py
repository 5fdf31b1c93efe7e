"""The provision step and the MCP gateway start, run for real: bash, tmux, pip, a venv.

A pretend E2B ``base`` sandbox: a PATH with no tmux, no ``claude`` and no ``claudeswarm`` (a symlink
farm of /usr/bin without them), the script run as an unprivileged user (``nobody``, as E2B runs it
as ``user``), and stand-ins for ``sudo``, ``apt-get`` and ``npm`` that do what the real ones would
where the script depends on it — and refuse what the real ones would refuse:

- ``sudo``: needs ``-n`` (a prompt would hang), resets the environment except PATH, HOME and the
  names in ``--preserve-env=`` (sudoers' env_reset), marks its child as root; logs its argv.
- ``apt-get``: refuses without root, refuses ``install`` before an ``update`` (E2B's base removes
  ``/var/lib/apt/lists``: e2b-dev/E2B templates/base/e2b.Dockerfile ``rm -rf /var/lib/apt/lists/*``)
  and without ``DEBIAN_FRONTEND=noninteractive``; ``install tmux`` puts the real tmux on PATH.
- ``npm``: refuses ``install -g`` without root; ``@anthropic-ai/claude-code@X.Y.Z`` puts a ``claude``
  (the fake agent) on PATH.
- the coordinator comes from a pip index in a temp directory (``PIP_INDEX_URL``), as a wheel whose
  ``claudeswarm`` runs the claudeswarm stand-in.

A flag file next to a stand-in makes it hang (or fail), for the installers' bounds.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from swarm_operator.bootstrap import (
    CLAUDE_CODE_PACKAGE,
    UV_PIN,
    BootstrapPlan,
    BootstrapReport,
    parse_report,
    render_setup,
)
from swarm_operator.model import COORDINATOR_PIN
from swarm_testbed.e2b import STANDIN_BIN as _TESTBED_BIN


def _readable_copy(source: pathlib.Path) -> pathlib.Path:
    """The stand-ins, copied (symlinks followed) where ``nobody`` can run them.

    The script runs as ``nobody``, which cannot reach into a checkout below a private directory (a
    clone inside ``mktemp -d``, mode 0700); a copy in a 0755 temporary directory works wherever the
    checkout is. One copy per test process, removed at exit."""
    target = pathlib.Path(tempfile.mkdtemp(prefix="swarm-standins-"))
    atexit.register(shutil.rmtree, target, True)
    target.chmod(0o755)
    copy = target / source.name
    shutil.copytree(source, copy, symlinks=False)
    return copy


FIXTURE_BIN = _readable_copy(pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "bin")
STANDIN_BIN = _readable_copy(_TESTBED_BIN)
NOBODY = 65534
COORD_REQ = "claudeswarm-standin==1.0.0"
MISSING = {"tmux", "claude", "claudeswarm", "sudo", "apt-get", "npm", "mcp-gateway"}

SUDO = r"""#!/bin/bash
# STAND-IN for sudo (NOPASSWD: ALL, env_reset): logs its argv, never any environment value.
printf 'sudo %s\n' "$*" >> "$CALLS_LOG"
nonint=0 keep=()
while [[ ${1-} == -* ]]; do
    case $1 in
        -n) nonint=1 ;;
        --preserve-env=*) IFS=, read -r -a names <<< "${1#*=}"
            for n in "${names[@]}"; do [[ -v $n ]] && keep+=("$n=${!n}"); done ;;
        *) echo "sudo (stand-in): unsupported option $1" >&2; exit 1 ;;
    esac
    shift
done
(( nonint )) || { echo "sudo: a terminal is required to read the password" >&2; exit 1; }
[[ -e $(dirname "$0")/../sudo-denied ]] && { echo "sudo: a password is required" >&2; exit 1; }
# (CALLS_LOG, FAKE_AGENT, STANDIN_GATEWAY: the test's own plumbing, passed on as well.)
exec env -i PATH="$PATH" HOME="$HOME" CALLS_LOG="$CALLS_LOG" FAKE_AGENT="$FAKE_AGENT" \
    STANDIN_GATEWAY="$STANDIN_GATEWAY" FAKE_ROOT=1 ${keep[@]+"${keep[@]}"} "$@"
"""

APT = r"""#!/bin/bash
# STAND-IN for apt-get on E2B's base: no package lists until `update`.
here=$(dirname "$0")/..
printf 'apt-get %s\n' "$*" >> "$CALLS_LOG"
[[ ${FAKE_ROOT-} == 1 ]] || { echo "E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)" >&2; exit 100; }
[[ ${DEBIAN_FRONTEND-} == noninteractive ]] || { echo "apt-get (stand-in): would prompt" >&2; exit 1; }
[[ -e $here/hang-apt ]] && exec -a "apt-hang-$here" sleep 1000
case $1 in
    update) touch "$here/apt-lists"; echo "Reading package lists... Done" ;;
    install)
        shift
        [[ " $* " == *" -y "* ]] || { echo "apt-get (stand-in): would ask to continue" >&2; exit 1; }
        for p in "$@"; do
            [[ $p == -* ]] && continue
            [[ -e $here/apt-lists ]] || { echo "E: Unable to locate package $p" >&2; exit 100; }
            case $p in
                tmux) ln -sf "$(command -v tmux.real)" "$here/sysbin/tmux" ;;
                python3-venv) ;;
                *) echo "E: Unable to locate package $p" >&2; exit 100 ;;
            esac
        done ;;
    *) echo "apt-get (stand-in): unsupported $1" >&2; exit 1 ;;
esac
"""

NPM = r"""#!/bin/bash
# STAND-IN for npm with a root-owned global prefix and a registry (the test's npm-registry/
# directory) holding the tarballs of @anthropic-ai/claude-code@X.Y.Z and of its native package
# @anthropic-ai/claude-code-linux-x64@X.Y.Z; flag tamper-npm (tamper-npm-native) serves the first
# (the second) with one byte changed (a compromised registry or mirror).
here=$(dirname "$0")/..
printf 'npm %s\n' "$*" >> "$CALLS_LOG"
[[ -e $here/hang-npm ]] && exec -a "npm-hang-$here" sleep 1000
[[ -e $here/fail-npm ]] && { echo "npm error code E404 (stand-in)" >&2; exit 1; }
if [[ $1 == pack ]]; then
    [[ $2 == --silent && $3 == --pack-destination && $# == 5 ]] || { echo "npm (stand-in): unsupported $*" >&2; exit 1; }
    [[ $5 =~ ^@anthropic-ai/(claude-code|claude-code-linux-x64)@[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "npm error 404 $5" >&2; exit 1; }
    name=${BASH_REMATCH[1]}
    cp "$here/npm-registry/$name.tgz" "$4/anthropic-ai-$name.tgz"
    [[ $name == claude-code && -e $here/tamper-npm ]] && printf 'x' >> "$4/anthropic-ai-$name.tgz"
    [[ $name != claude-code && -e $here/tamper-npm-native ]] && printf 'x' >> "$4/anthropic-ai-$name.tgz"
    echo "anthropic-ai-$name.tgz"
    exit 0
fi
[[ $1 == install && $2 == -g ]] || { echo "npm (stand-in): unsupported $*" >&2; exit 1; }
[[ ${FAKE_ROOT-} == 1 ]] || { echo "npm error code EACCES" >&2; exit 243; }
if [[ $# == 3 ]]; then
    [[ $3 =~ ^@anthropic-ai/claude-code@[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "npm error 404 $3" >&2; exit 1; }
else  # the verified wrapper and native tarballs, nothing fetched
    [[ $# == 5 && $3 == --omit=optional && $4 == */anthropic-ai-claude-code.tgz && -f $4 \
        && $5 == */anthropic-ai-claude-code-linux-x64.tgz && -f $5 ]] || { echo "npm (stand-in): unsupported $*" >&2; exit 1; }
fi
ln -sf "$FAKE_AGENT" "$here/sysbin/claude"
"""
#: The stand-in registry's tarballs and their npm integrity (sha512, base64).
NPM_TARBALL = b"stand-in claude-code tarball\n"
NPM_TARBALL_INTEGRITY = "sha512-" + base64.b64encode(hashlib.sha512(NPM_TARBALL).digest()).decode()
NPM_NATIVE_TARBALL = b"stand-in claude-code native tarball\n"
NPM_NATIVE_PACKAGE = CLAUDE_CODE_PACKAGE.replace("/claude-code@", "/claude-code-linux-x64@")
NPM_NATIVE_PIN = (
    (
        platform.machine(),
        NPM_NATIVE_PACKAGE,
        "sha512-" + base64.b64encode(hashlib.sha512(NPM_NATIVE_TARBALL).digest()).decode(),
    ),
)

# E2B's gateway daemonises: the command the SDK runs returns while the gateway keeps serving.
GATEWAY = r"""#!/bin/bash
printf 'mcp-gateway %s\n' "${1-}" >> "$CALLS_LOG"
[[ -e $(dirname "$0")/../gw-fail ]] && { echo "invalid configuration: $2" >&2; exit 1; }
SWARM_STANDIN_GATEWAY_FOREGROUND=1 setsid python3 "$STANDIN_GATEWAY" "$@" < /dev/null >> "$(dirname "$0")/../gateway.out" 2>&1 &
exit 0
"""


@dataclass
class Sandbox:
    """A pretend bare E2B sandbox: its own HOME, tmux directory, PATH and stand-ins."""

    root: pathlib.Path

    @property
    def home(self) -> pathlib.Path:
        return self.root / "h"

    @property
    def sysbin(self) -> pathlib.Path:
        return self.root / "sysbin"

    @property
    def calls(self) -> list[str]:
        log = self.root / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def path(self) -> str:
        return f"{self.root / 'fake'}:{self.sysbin}:{self.root / 'usr'}"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "TMUX_TMPDIR": str(self.root / "t"),
            "LANG": "C.UTF-8",
            "PATH": self.path(),
            "CALLS_LOG": str(self.root / "calls.log"),
            "FAKE_AGENT": str(FIXTURE_BIN / "fake-agent"),
            "STANDIN_GATEWAY": str(STANDIN_BIN / "mcp-gateway"),
            "PIP_INDEX_URL": (self.root / "index").as_uri(),
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_CACHE_DIR": "1",
            **extra,
        }

    def run(self, script: str, **extra: str) -> subprocess.CompletedProcess[str]:
        # As E2B runs it: one `bash -c` argument, as an unprivileged user.
        argv = [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "/bin/bash",
            "-c",
            script,
        ]
        return subprocess.run(
            argv, env=self.env(**extra), cwd=self.home, capture_output=True, text=True, timeout=120
        )

    def setup(self, plan: BootstrapPlan, **extra: str) -> BootstrapReport:
        r = self.run(render_setup(plan), **extra)
        assert r.returncode == 0, r.stderr
        return parse_report(r.stdout)

    def flag(self, name: str) -> None:
        (self.root / name).touch()


def _wheel(index: pathlib.Path) -> None:
    """A pip index holding one wheel, ``claudeswarm-standin 1.0.0``, whose ``claudeswarm`` execs
    the claudeswarm stand-in the other tests use."""
    name, version = "claudeswarm_standin", "1.0.0"
    target = str(FIXTURE_BIN / "claudeswarm")
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"import os, sys\n\n\ndef main():\n    os.execv({target!r}, [{target!r}, *sys.argv[1:]])\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: claudeswarm-standin\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": "[console_scripts]\nclaudeswarm = claudeswarm_standin:main\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    _publish(index, "claudeswarm-standin", f"{name}-{version}-py3-none-any.whl", files)


def _publish(index: pathlib.Path, project_name: str, wheel: str, files: dict[str, str]) -> None:
    project = index / project_name
    project.mkdir(parents=True)
    with zipfile.ZipFile(project / wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    (project / "index.html").write_text(f'<html><body><a href="{wheel}">{wheel}</a></body></html>\n')


def _uv_wheel(index: pathlib.Path, version: str) -> None:
    """``uv`` at ``version``: the uv stand-in as ``uv/__main__.py`` (``python3 -m uv``), as the
    emulator's index serves it."""
    info = f"uv-{version}.dist-info"
    files = {
        "uv/__init__.py": "",
        "uv/__main__.py": (STANDIN_BIN / "uv").read_text(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: uv\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    _publish(index, "uv", f"uv-{version}-py3-none-any.whl", files)


def _running_under(root: pathlib.Path) -> list[int]:
    found = subprocess.run(["pgrep", "-f", str(root)], capture_output=True, text=True).stdout.split()
    alive = []
    for pid in found:
        try:
            if pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
                alive.append(int(pid))
        except OSError:
            pass
    return alive


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    root = pathlib.Path(tempfile.mkdtemp(prefix="swp", dir="/tmp"))
    root.chmod(0o755)
    box = Sandbox(root)
    for name in ("h", "t", "sysbin", "fake", "usr"):
        (root / name).mkdir()
    for entry in os.scandir("/usr/bin"):
        if entry.name not in MISSING:
            (root / "usr" / entry.name).symlink_to(entry.path)
    # The real tmux, under a name the script never asks for: what `apt-get install tmux` installs.
    (root / "usr" / "tmux.real").symlink_to(shutil.which("tmux") or "/usr/bin/tmux")
    for name, text in (("sudo", SUDO), ("apt-get", APT), ("npm", NPM), ("mcp-gateway", GATEWAY)):
        (root / "fake" / name).write_text(text)
        (root / "fake" / name).chmod(0o755)
    _wheel(root / "index")
    _uv_wheel(root / "index", UV_PIN.removeprefix("uv=="))
    (root / "npm-registry").mkdir()
    (root / "npm-registry" / "claude-code.tgz").write_bytes(NPM_TARBALL)
    (root / "npm-registry" / "claude-code-linux-x64.tgz").write_bytes(NPM_NATIVE_TARBALL)
    for path in (root / "h", root / "t", root / "sysbin", root):
        os.chown(path, NOBODY, NOBODY)
    try:
        yield box
    finally:
        for sock in (root / "t").glob("tmux-*/*"):
            subprocess.run(["tmux", "-S", str(sock), "kill-server"], capture_output=True, timeout=10)
        for pidfile in (root / "h").glob(".swarm/*/mcp-gateway/pid"):
            try:
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
        deadline = time.monotonic() + 10
        while (leftovers := _running_under(root)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(root, ignore_errors=True)
        assert not leftovers, f"processes outlived the test: {leftovers}"


def _plan(**kw: object) -> BootstrapPlan:
    base: dict[str, object] = dict(
        session="swp",
        socket="swp",
        agents=2,
        command="claude",
        coordinator_enabled=True,
        coordinator_install=COORD_REQ,
        workdir="work",
        ready_timeout_s=20,
        install_timeout_s=60,
        coordinator_python="3.0",  # python3 is new enough: the venv path (the uv path has its own test)
        agent_cli_integrity=NPM_TARBALL_INTEGRITY,
        agent_cli_native=NPM_NATIVE_PIN,
    )
    return BootstrapPlan(**{**base, **kw})


def test_a_bare_template_is_provisioned_once_then_never_again(sandbox: Sandbox) -> None:
    assert shutil.which("tmux", path=sandbox.path()) is None
    assert shutil.which("claude", path=sandbox.path()) is None
    plan = _plan()
    assert plan.agent_cli_install == CLAUDE_CODE_PACKAGE  # `claude` gets the one pinned Claude Code

    first = sandbox.setup(plan)
    packed = sandbox.home / ".swarm" / "swp" / "npm-pack"
    assert not first.errors, first.errors
    assert first.installed == ["tmux", CLAUDE_CODE_PACKAGE, COORD_REQ]
    assert "provision" in first.steps and first.steps["provision"] > 0
    assert first.agents.ready == 2 and all(p.command == "fake-agent" for p in first.panes)
    assert first.coordinator.installed and first.coordinator.discovered == 2
    # Exactly these commands, each once, the privileged ones through `sudo -n`.
    assert sandbox.calls == [
        "sudo -n true",
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update",
        "apt-get update",
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tmux",
        "apt-get install -y --no-install-recommends tmux",
        # Packed as the sandbox user, checked against the pinned integrity, then installed from the
        # files: the wrapper and this machine's native package, nothing optional fetched.
        f"npm pack --silent --pack-destination {packed}/cli {CLAUDE_CODE_PACKAGE}",
        f"npm pack --silent --pack-destination {packed}/native {NPM_NATIVE_PACKAGE}",
        f"sudo -n npm install -g --omit=optional {packed}/cli/anthropic-ai-claude-code.tgz "
        f"{packed}/native/anthropic-ai-claude-code-linux-x64.tgz",
        f"npm install -g --omit=optional {packed}/cli/anthropic-ai-claude-code.tgz "
        f"{packed}/native/anthropic-ai-claude-code-linux-x64.tgz",
    ]
    assert not packed.exists()  # the verified tarballs are gone once installed
    venv = sandbox.home / ".swarm" / "swp" / "coordinator"
    assert (venv / ".swarm-requirement").read_text() == COORD_REQ
    assert (venv / "bin" / "claudeswarm").is_file()

    again = sandbox.setup(plan)
    assert again.installed == [] and "provision" not in again.steps and not again.errors
    assert len(sandbox.calls) == 9  # not even `sudo -n true`
    assert [p.pid for p in again.panes] == [p.pid for p in first.panes]
    assert again.coordinator.installed and again.coordinator.discovered == 2


def test_a_hanging_installer_is_cut_by_its_timeout_and_a_failing_one_reported(sandbox: Sandbox) -> None:
    sandbox.flag("hang-apt")
    sandbox.flag("fail-npm")
    plan = _plan(agents=1, install_timeout_s=2, coordinator_enabled=False, ready_timeout_s=2)
    started = time.monotonic()
    report = sandbox.setup(plan)
    assert time.monotonic() - started < 30
    errors = [e.message for e in report.errors if e.step == "provision"]
    log = f"{report.state_dir}/provision.log"
    assert len(errors) == 2, report.errors
    assert errors[0].startswith("installing tmux (apt-get update) failed (timed out after 2s; see " + log)
    assert errors[1].startswith(f"installing {CLAUDE_CODE_PACKAGE} failed (exit status 1; see {log})")
    assert "E404" in errors[1]  # the log's last words
    assert "provision" in report.steps and report.installed == []
    assert not report.server and report.agents.ready == 0  # no tmux: reported, not hung
    assert subprocess.run(["pgrep", "-f", f"apt-hang-{sandbox.root}"], capture_output=True).returncode == 1


def test_without_passwordless_sudo_nothing_is_attempted_and_the_error_says_why(sandbox: Sandbox) -> None:
    sandbox.flag("sudo-denied")
    report = sandbox.setup(_plan(agents=1, coordinator_enabled=False, ready_timeout_s=2))
    assert [e.message for e in report.errors if e.step == "provision"] == [
        f"cannot install tmux {CLAUDE_CODE_PACKAGE}: not root and no passwordless sudo "
        "(use a template that has them: swarm-operator template --build)"
    ]
    assert sandbox.calls == ["sudo -n true"] and "provision" not in report.steps


def test_which_agent_cli_is_installed_and_what_is_refused() -> None:
    assert _plan(command="/usr/local/bin/claude").agent_cli_install == CLAUDE_CODE_PACKAGE
    assert _plan(command="aider").agent_cli_install == ""  # nothing known: never installed
    assert _plan(agent_cli_install="").agent_cli_install == ""  # opted out
    for bad in (
        "@anthropic-ai/claude-code",
        "@anthropic-ai/claude-code@latest",
        "--registry=x@1.0.0",
        "claude@^2.0.0",
    ):
        with pytest.raises(ValueError, match="exact npm version"):
            _plan(agent_cli_install=bad)


def test_a_coordinator_that_cannot_be_installed_is_a_reported_error(sandbox: Sandbox) -> None:
    plan = _plan(agents=1, coordinator_install="claudeswarm-standin==9.9.9")
    report = sandbox.setup(plan)
    assert report.installed == ["tmux", CLAUDE_CODE_PACKAGE] and report.agents.ready == 1
    assert not report.coordinator.installed
    error = report.coordinator.error or ""
    assert error.startswith(
        "installing the coordinator failed: claudeswarm-standin==9.9.9 (exit status 1; see "
    )
    assert "claudeswarm-standin==9.9.9" in error.split("):", 1)[1]  # pip's own words, from the log


def test_on_a_python_older_than_the_coordinator_needs_uv_brings_a_managed_one(sandbox: Sandbox) -> None:
    # E2B's base has Python 3.11.6; claudeswarm needs 3.12. A floor above the host's python3 stands
    # for that whatever the host runs.
    plan = _plan(agents=1, coordinator_python="3.99")
    assert BootstrapPlan(session="s", socket="s", agents=1, command="c").coordinator_python == "3.12"
    report = sandbox.setup(plan)
    assert not report.errors, report.errors
    assert report.installed == ["tmux", CLAUDE_CODE_PACKAGE, UV_PIN, COORD_REQ]
    assert report.coordinator.installed and report.coordinator.discovered == 1
    venv = sandbox.home / ".swarm" / "swp" / "coordinator"
    # uv from pip at its pin into the user's site (no sudo), a venv on the Python asked for, the
    # coordinator into it with uv's pip -- and no python3-venv from apt.
    assert [c for c in sandbox.calls if c.startswith(("uv ", "apt-get install"))] == [
        "apt-get install -y --no-install-recommends tmux",
        f"uv venv --quiet --python 3.99 -- {venv}",
        f"uv pip install --quiet --python {venv}/bin/python -- {COORD_REQ}",
    ]
    assert (venv / ".uv-python").read_text() == "3.99"
    assert list((sandbox.home / ".local" / "lib").glob("python3*/site-packages/uv/__main__.py"))
    again = sandbox.setup(plan)  # installed once: a rerun asks uv nothing
    assert again.installed == [] and not again.errors and again.coordinator.installed
    assert sum(c.startswith("uv ") for c in sandbox.calls) == 2
    # uv already at its pin (a rerun after a failed coordinator install): not installed again.
    (venv / ".swarm-requirement").unlink()
    third = sandbox.setup(plan)
    assert third.installed == [COORD_REQ] and not third.errors
    assert [c for c in sandbox.calls if c.startswith("uv ")][2:] == [
        "uv --version",
        f"uv pip install --quiet --python {venv}/bin/python -- {COORD_REQ}",
    ]


def test_a_uv_that_cannot_be_installed_is_a_reported_coordinator_error(sandbox: Sandbox) -> None:
    report = sandbox.setup(_plan(agents=1, coordinator_python="3.99", uv_pin="uv==0.0.1"))
    assert not report.coordinator.installed and report.agents.ready == 1
    error = report.coordinator.error or ""
    assert error.startswith(
        f"installing the coordinator failed (with uv: python3 is older than 3.99): "
        f"{COORD_REQ} (exit status 1; see "
    ), error


def test_a_prebuilt_template_installs_nothing(sandbox: Sandbox) -> None:
    # What `swarm-operator template --build` makes: tmux, the agent CLI, the coordinator at the
    # operator's pin, and the pin recorded where the setup script looks.
    (sandbox.sysbin / "tmux").symlink_to(shutil.which("tmux") or "/usr/bin/tmux")
    (sandbox.sysbin / "claude").symlink_to(FIXTURE_BIN / "fake-agent")
    (sandbox.sysbin / "claudeswarm").symlink_to(FIXTURE_BIN / "claudeswarm")
    marker = sandbox.home / ".swarm-template" / "coordinator"
    marker.parent.mkdir()
    marker.write_text(COORDINATOR_PIN)
    os.chown(marker.parent, NOBODY, NOBODY)
    report = sandbox.setup(_plan(coordinator_install=COORDINATOR_PIN))
    assert not report.errors and report.agents.ready == 2 and report.coordinator.discovered == 2
    assert report.installed == [] and "provision" not in report.steps
    assert sandbox.calls == []  # no sudo, no apt-get, no npm
    assert not (sandbox.home / ".swarm" / "swp" / "coordinator").exists()  # no venv, no pip


def test_the_mcp_gateway_is_started_e2b_s_way_with_its_secret_in_no_script(sandbox: Sandbox) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    secret = "mcp-s3cret-7e1d"
    mcp = {"config": {"exa": {}}, "secrets": [["exa", "apiKey", "SWARM_SECRET_MCP_0_APIKEY"]]}
    plan = _plan(
        agents=1, coordinator_enabled=False, mcp=json.dumps(mcp), mcp_port=port, mcp_gateway="mcp-gateway"
    )
    (sandbox.sysbin / "tmux").symlink_to(shutil.which("tmux") or "/usr/bin/tmux")
    (sandbox.sysbin / "claude").symlink_to(FIXTURE_BIN / "fake-agent")
    script = render_setup(plan)
    assert secret not in script and "--config-file" not in script

    first = parse_report(sandbox.run(script, SWARM_SECRET_MCP_0_APIKEY=secret).stdout)
    assert first.mcp is not None and first.mcp.gateway and first.mcp.started, first.errors
    assert first.mcp.tools == 1 and not first.errors
    # Through sudo, by name only: the value never is on sudo's or the starter's command line.
    start = (
        f"sudo -n --preserve-env=SWARM_MCP_CONFIG,GATEWAY_ACCESS_TOKEN /bin/sh -c "
        f'exec "$0" --config "$SWARM_MCP_CONFIG" "$@" {sandbox.root}/fake/mcp-gateway --port {port}'
    )
    assert sandbox.calls == [start, "mcp-gateway --config"]
    # The daemon got the JSON (E2B's way: on its argv) and the token, through sudo's env_reset.
    received = json.loads((sandbox.home / ".mcp-gateway-standin" / "received.json").read_text())
    assert received == {"config": {"exa": {"apiKey": secret}}, "port": port, "token_set": True}
    state = sandbox.home / ".swarm" / "swp" / "mcp-gateway"
    pid = int((state / "pid").read_text())
    argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[1:3] == [str(STANDIN_BIN / "mcp-gateway").encode(), b"--config"]
    # Nothing the script keeps holds the secret: no config file, a hash only.
    assert not (state / "config.json").exists() and len((state / "config.sha256").read_text()) == 64
    holders = subprocess.run(
        ["grep", "-rl", secret, str(sandbox.home / ".swarm")], capture_output=True, text=True
    ).stdout.split()
    assert holders == []

    again = parse_report(sandbox.run(script, SWARM_SECRET_MCP_0_APIKEY=secret).stdout)
    assert again.mcp is not None and again.mcp.gateway and not again.mcp.started
    assert int((state / "pid").read_text()) == pid and len(sandbox.calls) == 2

    # A new value: the old gateway is stopped (as root: it runs as root on E2B), a new one started.
    changed = parse_report(sandbox.run(script, SWARM_SECRET_MCP_0_APIKEY=secret + "2").stdout)
    assert changed.mcp is not None and changed.mcp.gateway and changed.mcp.started
    assert (
        sandbox.calls[2]
        == f'sudo -n --preserve-env=SWARM_MCP_CONFIG,GATEWAY_ACCESS_TOKEN /bin/sh -c kill "$@" sh {pid}'
    )
    assert int((state / "pid").read_text()) != pid
    deadline = time.monotonic() + 5
    while pathlib.Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    received = json.loads((sandbox.home / ".mcp-gateway-standin" / "received.json").read_text())
    assert received["config"] == {"exa": {"apiKey": secret + "2"}}


def test_a_gateway_that_prints_its_configuration_never_leaks_a_secret_into_the_report(
    sandbox: Sandbox,
) -> None:
    sandbox.flag("gw-fail")
    secret = 'q"uo\\te-s3cret'  # JSON-escaped inside the configuration the gateway prints
    mcp = {"config": {"exa": {"region": "eu"}}, "secrets": [["exa", "apiKey", "SWARM_SECRET_MCP_0_APIKEY"]]}
    (sandbox.sysbin / "tmux").symlink_to(shutil.which("tmux") or "/usr/bin/tmux")
    (sandbox.sysbin / "claude").symlink_to(FIXTURE_BIN / "fake-agent")
    plan = _plan(agents=1, coordinator_enabled=False, mcp=json.dumps(mcp), mcp_start_timeout_s=1)
    r = sandbox.run(render_setup(plan), SWARM_SECRET_MCP_0_APIKEY=secret)
    report = parse_report(r.stdout)
    [error] = [e.message for e in report.errors if e.step == "mcp"]
    assert 'its log ends: invalid configuration: {"exa": {"apiKey": "***", "region": "eu"}}' in error
    escaped = json.dumps(secret)[1:-1]
    assert secret not in r.stdout and escaped not in r.stdout and "s3cret" not in r.stdout
