"""``swarm-operator dev`` driven in a real terminal: a private tmux server, keys in, screen out."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.conftest import KUBECTL, REPO, wait_for

from swarm_operator.playground import stragglers

pytestmark = pytest.mark.e2e

SWARM_OPERATOR = Path(sys.executable).parent / "swarm-operator"


class Terminal:
    """One tmux pane on a private server (own TMUX_TMPDIR), as a person's terminal window."""

    def __init__(self, root: Path, command: str, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.env = {**os.environ, "TMUX_TMPDIR": str(root), **(env or {})}
        self.env.pop("TMUX", None)
        # The command's status stays on screen; the pane lives until the server is killed.
        wrapped = f"{command}; printf '\\nEXIT=%s\\n' $?; sleep 600"
        self._tmux("new-session", "-d", "-x", "220", "-y", "50", "-s", "t", wrapped)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", "test", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-t", "t", "-S", "-200")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def wait(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        try:
            return wait_for(
                lambda: re.search(pattern, self.screen()),
                timeout,
                interval=0.1,
                message=f"{pattern!r} on screen",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- screen ---\n{self.screen()}") from None

    def close(self) -> None:
        subprocess.run(["tmux", "-L", "test", "kill-server"], env=self.env, capture_output=True, timeout=10)


@pytest.fixture()
def terminal(tmp_path: Path) -> Iterator[type[Terminal]]:
    root = tmp_path / "tmux"
    root.mkdir()
    opened: list[Terminal] = []

    def open_terminal(command: str, env: dict[str, str] | None = None) -> Terminal:
        opened.append(Terminal(root, command, env))
        return opened[-1]

    yield open_terminal  # type: ignore[misc]
    for term in opened:
        term.close()


def _tmux_servers(pids: list[int]) -> list[int]:
    servers = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().startswith("tmux"):
                servers.append(pid)
        except OSError:
            pass
    return servers


def test_dev_shows_ready_serves_kubectl_and_ctrl_c_leaves_nothing(terminal: type[Terminal]) -> None:
    before = set(stragglers("E2B_EMULATOR_SANDBOX="))  # other beds' sandboxes are not ours to count
    term = terminal(f"cd {REPO} && {SWARM_OPERATOR} dev")  # exactly what the README runs
    playground = Path(term.wait(r"swarm-operator playground in (\S+)", 30).group(1))
    kubeconfig = Path(term.wait(r"kubeconfig: (\S+)", 30).group(1))
    assert kubeconfig.parent == playground

    # The live table reaches Ready with all four demo agents (drawn in place: a TTY).
    term.wait(r"default/hello-swarm\s+Ready\s+4/4\s+\w+\s+create [\d.]+s init [\d.]+s", 60)
    listed = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), "get", "swarm", "-A"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"hello-swarm\s+Ready\s+4/4", listed.stdout), listed.stdout
    # The env file lets another terminal reach both APIs.
    assert "export KUBECONFIG=" in (playground / "env").read_text()

    # Everything the playground started carries its marker, tmux servers inside the sandbox included.
    # The playground's own processes carry its path; each emulated sandbox's processes (its tmux
    # server included) carry the emulator's sandbox marker, by which the emulator kills them.
    alive = stragglers(str(playground))
    in_sandboxes = [pid for pid in stragglers("E2B_EMULATOR_SANDBOX=") if pid not in before]
    assert alive and _tmux_servers(in_sandboxes), (alive, in_sandboxes)

    term.keys("C-c")
    term.wait(r"EXIT=0", 60)
    screen = term.screen()
    assert "nothing left behind" in screen and "Traceback" not in screen, screen
    assert stragglers(str(playground)) == []
    assert not set(stragglers("E2B_EMULATOR_SANDBOX=")) & set(in_sandboxes)
    assert not playground.exists()


def test_dev_with_a_bad_manifest_says_so_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    proc = subprocess.run(
        [str(SWARM_OPERATOR), "dev", "-f", str(missing)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert f"cannot read {missing}" in proc.stderr


def test_dev_real_e2b_needs_a_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "E2B_API_KEY"}
    proc = subprocess.run(
        [str(SWARM_OPERATOR), "dev", "--e2b", "real", "-f", str(REPO / "examples" / "minimal.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "swarm-operator dev: --e2b real needs E2B_API_KEY set to your E2B API key"


def test_scripts_dev_runs_setup_then_the_dev_command() -> None:
    script = (REPO / "scripts" / "dev").read_text()
    assert os.access(REPO / "scripts" / "dev", os.X_OK)
    lines = [line for line in script.splitlines() if line and not line.startswith("#")]
    assert lines[-2:] == ["scripts/setup", 'exec .venv/bin/swarm-operator dev "$@"']
    assert shutil.which("bash")
