"""The rendered scripts run for real: bash, real tmux on a private socket, a fake agent.

Every test gets its own short-lived HOME and TMUX_TMPDIR (short: a unix socket path is capped at
108 bytes), so no test ever meets the user's tmux; the fixture kills every tmux server found there
and checks that none of their processes survive.
"""

from __future__ import annotations

import http.server
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from swarm_operator.bootstrap import (
    BootstrapPlan,
    BootstrapReport,
    parse_health,
    parse_report,
    parse_teardown,
    render_probe,
    render_setup,
    render_teardown,
)

FIXTURE_BIN = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "bin"
SECRET_TOKEN = "tok3n-9f1c2e7a"
SECRET = f'it\'s "{SECRET_TOKEN}" $(touch /nope) `x`\nline2 ünï'
#: The stand-in gateway (started `mcp-gateway --config JSON`, the only way the setup script starts one)
#: in the foreground as this user, writing no token file into the host's /etc.
GATEWAY_SDK_MODE = {"SWARM_STANDIN_GATEWAY_FOREGROUND": "1"}


@dataclass
class Box:
    """A pretend sandbox: a private HOME and tmux directory, and a way to run a script in it."""

    home: pathlib.Path
    tmux_dir: pathlib.Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "TMUX_TMPDIR": str(self.tmux_dir),
            "LANG": "C.UTF-8",
            "PATH": f"{FIXTURE_BIN}:{os.environ['PATH']}",
            **extra,
        }

    def run(
        self, script: str, *, login: bool = True, timeout: float = 60, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        # The SDK's way: the whole script as one `bash -l -c` argument. A login shell takes PATH
        # from /etc/profile, so tests that need the test doubles on PATH run without -l.
        argv = ["/bin/bash", "-l", "-c", script] if login else ["/bin/bash", "-c", script]
        return subprocess.run(
            argv, env=self.env(**extra), cwd=self.home, capture_output=True, text=True, timeout=timeout
        )

    def sockets(self) -> list[pathlib.Path]:
        return [p for p in self.tmux_dir.glob("tmux-*/*") if p.is_socket()]

    def tmux(self, plan: BootstrapPlan, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", plan.socket, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout


def _running(pid: int) -> bool:
    """Whether a process runs. A zombie does not: it has ended and only awaits its parent's wait,
    which after the tmux server is gone is init's, on init's schedule, not the scripts'."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _running_under(root: pathlib.Path) -> list[int]:
    found = subprocess.run(["pgrep", "-f", str(root)], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found if _running(int(pid))]


def _server_pids(box: Box) -> list[int]:
    pids = []
    for sock in box.sockets():
        r = subprocess.run(
            ["tmux", "-S", str(sock), "display-message", "-p", "#{pid}"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if r.returncode == 0 and r.stdout.strip().isdigit():
            pids.append(int(r.stdout))
    return pids


@pytest.fixture
def box() -> Iterator[Box]:
    root = pathlib.Path(tempfile.mkdtemp(prefix="swb", dir="/tmp"))
    b = Box(home=root / "h", tmux_dir=root / "t")
    b.home.mkdir()
    b.tmux_dir.mkdir()
    try:
        yield b
    finally:
        for pid in _server_pids(b):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for sock in b.sockets():
            subprocess.run(["tmux", "-S", str(sock), "kill-server"], capture_output=True, timeout=10)
        # A signalled server takes a moment to exit (more so on a loaded machine): give what was
        # stopped above a bounded time to end; only what still runs after it outlived the test.
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


def make_plan(**kw: object) -> BootstrapPlan:
    base: dict[str, object] = dict(
        session="swt",
        socket="swt",
        agents=3,
        command=str(FIXTURE_BIN / "fake-agent"),
        env_names=["SECRET_KEY"],
        coordinator_enabled=False,
        ready_timeout_s=15,
        poll_interval_s=0.05,
        # The operator's default settle: the crash-at-once tests below prove it still catches them.
        settle_s=BootstrapPlan.model_fields["settle_s"].default,
    )
    return BootstrapPlan(**{**base, **kw})


def setup(box: Box, plan: BootstrapPlan, *, login: bool = True, **env: str) -> BootstrapReport:
    r = box.run(render_setup(plan), login=login, SECRET_KEY=SECRET, **env)
    assert r.returncode == 0, r.stderr
    return parse_report(r.stdout)


def pids(report: BootstrapReport) -> dict[int, int | None]:
    return {p.index: p.pid for p in report.panes}


def test_three_agents_start_with_their_secret_only_in_the_env_file(box: Box) -> None:
    plan = make_plan()
    report = setup(box, plan, FAKE_AGENT_ENV_OUT=str(box.home / "ident"))
    assert report.agents.desired == 3 and report.agents.ready == 3 and report.ready
    assert [p.index for p in report.panes] == [0, 1, 2]
    assert all(p.alive and not p.dead and p.command == "fake-agent" for p in report.panes)
    assert [p.target for p in report.panes] == ["swt:0.0", "swt:0.1", "swt:0.2"]
    assert set(report.steps) >= {"prepare", "env", "tmux", "ready"}
    # Alive, piped (so an agent's last output survives its exit), and not in a mode (a tmux config
    # error would show in one, and Ctrl-C would then never reach the agent).
    listed = box.tmux(
        plan, "list-panes", "-s", "-t", "=swt:", "-F", "#{pane_dead}:#{pane_pipe}:#{pane_in_mode}"
    ).split()
    assert listed == ["0:1:0", "0:1:0", "0:1:0"]

    # Each agent knows who it is and received the secret intact (quotes, newline, unicode).
    for pane in report.panes:
        ident = (box.home / f"ident.{pane.index}").read_text().split("\n")
        assert ident[:4] == [f"agent-{pane.index}", str(pane.index), pane.pane_id, "swt"]
        environ = pathlib.Path(f"/proc/{pane.pid}/environ").read_bytes().split(b"\0")
        assert f"SECRET_KEY={SECRET}".encode() in environ

    env_file = pathlib.Path(report.state_dir) / "agent.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert pathlib.Path(report.state_dir).stat().st_mode & 0o777 == 0o700
    # Not in any argv, not in any other file, not in the tmux server's environment.
    assert SECRET_TOKEN not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    holders = subprocess.run(
        ["grep", "-rl", SECRET_TOKEN, str(box.home), str(box.tmux_dir)], capture_output=True, text=True
    ).stdout.split()
    assert holders == [str(env_file)]
    assert SECRET_TOKEN not in box.tmux(plan, "show-environment", "-g")
    server_pid = _server_pids(box)[0]
    assert SECRET_TOKEN.encode() not in pathlib.Path(f"/proc/{server_pid}/environ").read_bytes()


def test_rerun_keeps_healthy_agents_and_scaling_follows_n(box: Box) -> None:
    first = setup(box, make_plan())
    again = setup(box, make_plan())
    assert pids(again) == pids(first)
    assert again.created == again.removed == again.restarted == []

    up = setup(box, make_plan(agents=5))
    assert up.agents.ready == 5 and up.created == [3, 4]
    assert {i: up.panes[i].pid for i in range(3)} == pids(first)
    assert [p.target for p in up.panes] == [f"swt:0.{i}" for i in range(5)]

    down = setup(box, make_plan(agents=2))
    assert down.agents.ready == 2 and sorted(down.removed) == [2, 3, 4]
    assert pids(down) == {0: pids(first)[0], 1: pids(first)[1]}
    plan2 = make_plan(agents=2)
    assert len(box.tmux(plan2, "list-panes", "-s", "-t", "=swt:", "-F", "#{pane_id}").split()) == 2

    health = parse_health(box.run(render_probe(plan2)).stdout)
    assert health.healthy and health.agents.alive == 2 and health.missing == [] and health.extra == 0


def test_an_agent_that_exits_at_once_is_reported_dead_then_restarted_on_rerun(box: Box) -> None:
    plan = make_plan(agents=2, args=["--exit", "3"])
    report = setup(box, plan)
    assert report.agents.ready == 0 and report.agents.failed == 2 and not report.ready
    assert all(p.dead and not p.alive and p.exit_status in (3, None) for p in report.panes)
    agent_errors = {e.agent: e.message for e in report.errors if e.step == "agent"}
    assert set(agent_errors) == {0, 1}
    assert all("exiting with status 3" in m for m in agent_errors.values())

    probe = parse_health(box.run(render_probe(plan)).stdout)
    assert probe.agents.dead == 2 and not probe.healthy

    # Self-heal: the rerun restarts the dead agents in their panes and counts it.
    healed = setup(box, make_plan(agents=2))
    assert healed.restarted == [0, 1] and healed.agents.ready == 2
    assert [p.restarts for p in healed.panes] == [1, 1]
    assert [p.pane_id for p in healed.panes] == [p.pane_id for p in report.panes]


def test_a_missing_command_is_a_dead_agent_not_a_failed_script(box: Box) -> None:
    report = setup(box, make_plan(agents=1, command="no-such-agent-binary"))
    # tmux does not always learn the status of a process that ends at once; the output says why.
    assert report.panes[0].dead and report.panes[0].exit_status in (127, None)
    assert "no-such-agent-binary" in report.errors[0].message


def test_missing_env_values_are_reported(box: Box) -> None:
    r = box.run(render_setup(make_plan(agents=1, env_names=["SECRET_KEY", "OTHER"])), SECRET_KEY="v")
    report = parse_report(r.stdout)
    assert report.env_missing == ["OTHER"]
    assert any(e.step == "env" and "OTHER" in e.message for e in report.errors)


def test_coordinator_discovers_the_agents(box: Box) -> None:
    log = box.home / "claudeswarm.log"
    plan = make_plan(coordinator_enabled=True, coordinator_install="preinstalled", workdir="work")
    report = setup(box, plan, login=False, CLAUDESWARM_DOUBLE_LOG=str(log))
    assert report.coordinator.enabled and report.coordinator.installed
    assert report.coordinator.discovered == 3 and report.coordinator.error is None
    assert log.read_text().split("\n")[0] == "discover-agents --json"
    assert (box.home / "work" / "ACTIVE_AGENTS.json").is_file()
    health = parse_health(box.run(render_probe(plan)).stdout)
    assert health.registry is not None and health.registry.agents == 3

    # Scale: the rerun re-runs discovery.
    assert (
        setup(
            box,
            make_plan(coordinator_enabled=True, workdir="work", agents=4),
            login=False,
            CLAUDESWARM_DOUBLE_LOG=str(log),
        ).coordinator.discovered
        == 4
    )


def test_preinstalled_coordinator_missing_from_path_is_an_error(box: Box) -> None:
    plan = make_plan(agents=1, coordinator_enabled=True, command="sleep", args=["1000"])
    env = box.env()
    env["PATH"] = "/usr/bin:/bin"
    r = subprocess.run(
        ["/bin/bash", "-c", render_setup(plan)],
        env={**env, "SECRET_KEY": "x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = parse_report(r.stdout)
    assert report.agents.ready == 1
    assert not report.coordinator.installed and "not on PATH" in (report.coordinator.error or "")


def test_installed_requirement_is_not_installed_again(box: Box) -> None:
    # A previous run installed exactly this requirement: the marker and the CLI say so, no pip runs
    # (the stand-in python would fail loudly if it were called).
    plan = make_plan(
        agents=1, coordinator_enabled=True, coordinator_install="claude-swarm==0.1.0", python="/bin/false"
    )
    venv_bin = box.home / ".swarm" / "swt" / "coordinator" / "bin"
    venv_bin.mkdir(parents=True)
    shutil.copy(FIXTURE_BIN / "claudeswarm", venv_bin / "claudeswarm")
    (venv_bin.parent / ".swarm-requirement").write_text("claude-swarm==0.1.0")
    assert setup(box, plan).coordinator.installed
    # A different pin means a reinstall, which here fails and is reported, not swallowed.
    report = setup(
        box,
        make_plan(
            agents=1, coordinator_enabled=True, coordinator_install="claude-swarm==0.2.0", python="/bin/false"
        ),
    )
    assert (
        not report.coordinator.installed and "installing the coordinator failed" in report.coordinator.error
    )
    assert report.agents.ready == 1


def test_teardown_stops_agents_and_the_server(box: Box) -> None:
    plan = make_plan()
    report = setup(box, plan)
    r = box.run(render_teardown(plan, grace_s=5))
    down = parse_teardown(r.stdout)
    assert down.server and down.signalled == 3 and down.graceful and down.killed and down.gone
    assert _server_pids(box) == []
    # Every agent has ended by the time teardown reports "gone" (a zombie awaiting init has ended).
    for pane in report.panes:
        assert pane.pid is not None and not _running(pane.pid)
    assert not (pathlib.Path(report.state_dir) / "agent.env").exists()
    again = parse_teardown(box.run(render_teardown(plan)).stdout)
    assert not again.server and again.gone
    assert not parse_health(box.run(render_probe(plan)).stdout).server


def test_a_hundred_agents(box: Box) -> None:
    plan = make_plan(agents=100, command="sleep", args=["1000"], ready_timeout_s=60)
    started = time.monotonic()
    report = setup(box, plan)
    assert report.agents.ready == 100, report.errors[:3]
    assert len({p.pane_id for p in report.panes}) == 100
    assert time.monotonic() - started < 60
    assert parse_teardown(box.run(render_teardown(plan, grace_s=5)).stdout).gone


def test_semicolons_in_user_values_never_become_tmux_commands(box: Box) -> None:
    """tmux splits its argv at an argument ending in ';': an agent arg "x;" followed by
    "run-shell ..." must stay an argument, never a second tmux command."""
    canary = box.home.parent / "PWNED"
    hostile = [";", "run-shell", f"touch {canary}", "x;", "run-shell", f"touch {canary}.2", "y\\;"]
    record = 'printf "%s\\0" "$@" > "$HOME/argv"; exec sleep 1000'
    plan = make_plan(agents=1, command="/bin/bash", args=["-c", record, "agent", *hostile], workdir="work;")
    report = setup(box, plan)
    assert report.agents.ready == 1, report.errors
    assert not canary.exists() and not pathlib.Path(f"{canary}.2").exists()
    # The agent got every argument exactly as written, in the directory named.
    assert (box.home / "argv").read_bytes().split(b"\0")[:-1] == [a.encode() for a in hostile]
    assert pathlib.Path(f"/proc/{report.panes[0].pid}/cwd").resolve() == box.home / "work;"


class _SseGateway(http.server.BaseHTTPRequestHandler):
    """An MCP gateway of another make than our stand-in: answers in server-sent events (as SDK-built
    MCP servers may), pages tools/list, serves no /health. The probe must get its verdict anyway."""

    protocol_version = "HTTP/1.1"
    token = "gw-token"
    pages = {None: (["a", "b"], "p2"), "p2": (["c"], None)}

    def do_POST(self) -> None:
        msg = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            self._reply(401, b"")
            return
        if "id" not in msg:
            self._reply(202, b"")
            return
        if msg["method"] == "initialize":
            result: dict[str, object] = {"protocolVersion": "2025-03-26", "capabilities": {"tools": {}}}
        else:
            names, cursor = self.pages[(msg.get("params") or {}).get("cursor")]
            result = {
                "tools": [{"name": n, "inputSchema": {}} for n in names],
                **({"nextCursor": cursor} if cursor else {}),
            }
        event = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result})
        self._reply(
            200, f"event: message\ndata: {event}\n\n".encode(), "text/event-stream", {"Mcp-Session-Id": "s1"}
        )

    def do_GET(self) -> None:
        self._reply(404, b"")

    def do_DELETE(self) -> None:
        self._reply(200, b"")

    def _reply(
        self, code: int, body: bytes, kind: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        for key, value in {"Content-Type": kind, "Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_probe_checks_the_mcp_gateway_through_mcp_itself(box: Box) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SseGateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        plan = make_plan(agents=1, mcp=json.dumps({"config": {"exa": {}}}), mcp_port=server.server_address[1])
        state = box.home / plan.state_dir / "mcp-gateway"
        # Never started here: the probe says so rather than waiting for it.
        report = parse_health(box.run(render_probe(plan)).stdout)
        assert (
            report.mcp is not None and not report.mcp.gateway and "never started" in (report.mcp.error or "")
        )
        state.mkdir(parents=True)
        (state / "token").write_text(_SseGateway.token + "\n")
        report = parse_health(box.run(render_probe(plan)).stdout)
        assert report.mcp is not None and report.mcp.gateway, report.mcp
        assert report.mcp.tools == 3 and report.mcp.servers is None  # two pages; no per-server health
        (state / "token").write_text("wrong\n")
        report = parse_health(box.run(render_probe(plan)).stdout)
        assert report.mcp is not None and not report.mcp.gateway and "HTTP 401" in (report.mcp.error or "")
    finally:
        server.shutdown()
        server.server_close()
    # Without MCP in the spec the probe does not look for a gateway at all.
    assert parse_health(box.run(render_probe(make_plan(agents=1))).stdout).mcp is None


def test_a_dead_mcp_gateway_is_restarted_within_the_budget_then_left(box: Box) -> None:
    from swarm_testbed.e2b import STANDIN_BIN

    port = _free_port()
    plan = make_plan(
        agents=1,
        mcp=json.dumps({"config": {"exa": {"apiKey": "k"}}}),
        mcp_port=port,
        mcp_gateway=str(STANDIN_BIN / "mcp-gateway"),
        max_restarts=1,
    )
    state = box.home / plan.state_dir / "mcp-gateway"

    def gateway_pid() -> int:
        return int((state / "pid").read_text())

    def kill_gateway() -> None:
        pid = gateway_pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    first = setup(box, plan, login=False, **GATEWAY_SDK_MODE)
    assert first.mcp is not None and first.mcp.gateway and first.mcp.started and first.mcp.restarts == 0
    assert first.mcp.tools == 1 and not first.errors
    again = setup(box, plan, login=False, **GATEWAY_SDK_MODE)  # alive, same configuration: left alone
    assert again.mcp is not None and again.mcp.gateway and not again.mcp.started
    kill_gateway()
    probe = parse_health(box.run(render_probe(plan), login=False, **GATEWAY_SDK_MODE).stdout)
    assert probe.mcp is not None and not probe.mcp.gateway and probe.mcp.restarts == 0
    healed = setup(box, plan, login=False, **GATEWAY_SDK_MODE)
    assert healed.mcp is not None and healed.mcp.gateway and healed.mcp.started and healed.mcp.restarts == 1
    kill_gateway()
    spent = setup(box, plan, login=False, **GATEWAY_SDK_MODE)
    assert spent.mcp is not None and not spent.mcp.gateway and spent.mcp.restarts == 1
    # Not an error (the agents keep running); the report and so status.mcp say why.
    assert not spent.errors and "maxRestarts" in (spent.mcp.error or "")
    # A new configuration is a fresh start, with a fresh budget.
    changed = setup(
        box,
        plan.model_copy(update={"mcp": json.dumps({"config": {"exa": {"apiKey": "k2"}}})}),
        login=False,
        **GATEWAY_SDK_MODE,
    )
    assert changed.mcp is not None and changed.mcp.gateway and changed.mcp.restarts == 0
    kill_gateway()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_mcp_secret_missing_from_the_environment_is_a_reported_error(box: Box) -> None:
    from swarm_testbed.e2b import STANDIN_BIN

    mcp = {"config": {"exa": {}}, "secrets": [["exa", "apiKey", "SWARM_SECRET_MCP_0_TOKEN"]]}
    plan = make_plan(
        agents=1,
        mcp=json.dumps(mcp),
        mcp_port=_free_port(),
        mcp_gateway=str(STANDIN_BIN / "mcp-gateway"),
        mcp_start_timeout_s=1,
    )
    report = setup(
        box, plan, login=False, **GATEWAY_SDK_MODE
    )  # the script still reports (no unbound variable)
    assert [e.step for e in report.errors] == ["mcp"]  # no gateway started, none checked
    assert "exa.apiKey was not provided" in report.errors[0].message
    assert report.mcp is not None and not report.mcp.gateway and report.mcp.restarts == 0
    assert not (box.home / plan.state_dir / "mcp-gateway" / "config.json").exists()
