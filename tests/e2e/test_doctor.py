"""``swarm-operator doctor`` against the E2B emulator: it passes on a conformant one, names the
contract a deliberately wrong one breaks, and leaves nothing behind even when interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import pytest
from tests.e2e.conftest import wait_for
from tests.e2e.test_dev import SWARM_OPERATOR

from swarm_operator.backend.doctor import TAG

pytestmark = pytest.mark.e2e

#: A short cap keeps the "create past the cap" check cheap; the emulator enforces the same number.
CAP = 120
CONFORMANT = {"plan": "hobby", "lifetime_cap_seconds": CAP, "identity_delay_seconds": 1.0}


def _env(emulator: Any, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "E2B_"))}
    env.update(E2B_API_URL=emulator.url, E2B_SANDBOX_URL=emulator.url, E2B_API_KEY=key)
    return env


def _doctor(emulator: Any, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SWARM_OPERATOR), "doctor", "--lifetime-cap-seconds", str(CAP), "--call-timeout", "10", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=_env(emulator, key),
    )


def _rows(stdout: str) -> dict[str, str]:
    """contract -> ok/FAIL, from the table."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines and lines[0].startswith("CONTRACT"), stdout
    return {line.rsplit(None, 1)[0].split("  ")[0]: line.rsplit(None, 1)[1] for line in lines[1:]}


def _tagged_alive(emulator: Any) -> list[dict[str, Any]]:
    return [s for s in emulator.inspect() if TAG in (s.get("metadata") or {})]


@pytest.mark.parametrize(
    "template",
    [[], ["--template", "base"], ["--template", "anthropic-claude-code"]],
    ids=["default-template", "base", "anthropic-claude-code"],
)
def test_doctor_passes_against_the_conformant_emulator(
    e2b_emulator_factory: Any, e2b_api_key: str, template: list[str]
) -> None:
    emulator = e2b_emulator_factory(**CONFORMANT)
    proc = _doctor(emulator, e2b_api_key, *template)
    rows = _rows(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(rows.values()) == {"ok"}, proc.stdout
    for contract in (
        "create: metadata",
        "egress: allowOut",
        "identity: E2B_SANDBOX_ID",
        "lease: set_timeout(",
        "lease: set_timeout past",
        "plan cap: create",
        "mcp (mcp-gateway): mcp-gateway --config",
        "kill",
        "nothing left behind",
    ):
        assert any(row.startswith(contract) for row in rows), (contract, proc.stdout)
    # The operator's default template (whatever it is): its tools, and the sudo that installs them.
    tools = {row.split(": ", 1)[1] for row in rows if row.startswith("tools (")}
    assert tools == {"sudo -n true as user", "tmux", "git", "node"}, proc.stdout
    assert e2b_api_key not in proc.stdout + proc.stderr
    assert _tagged_alive(emulator) == []


def test_doctor_names_the_egress_contract_on_a_permissive_emulator(
    e2b_emulator_factory: Any, e2b_api_key: str
) -> None:
    emulator = e2b_emulator_factory(**CONFORMANT, permissive_egress=True)
    proc = _doctor(emulator, e2b_api_key)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [contract for contract, ok in _rows(proc.stdout).items() if ok != "ok"]
    assert failed == ["egress: allowOut [github.com] without denyOut 0.0.0.0/0"], proc.stdout
    assert _tagged_alive(emulator) == []


def test_doctor_names_the_plan_cap_when_told_a_shorter_one(
    e2b_emulator_factory: Any, e2b_api_key: str
) -> None:
    """A user on Pro who leaves --plan at hobby learns that their cap differs, by name."""
    emulator = e2b_emulator_factory(**{**CONFORMANT, "lifetime_cap_seconds": 4 * CAP})
    proc = _doctor(emulator, e2b_api_key)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [contract for contract, ok in _rows(proc.stdout).items() if ok != "ok"]
    assert failed and all("cap" in contract for contract in failed), proc.stdout
    assert _tagged_alive(emulator) == []


def test_doctor_names_the_gateway_contract_on_a_template_without_it(
    e2b_emulator_factory: Any, e2b_api_key: str
) -> None:
    emulator = e2b_emulator_factory(**CONFORMANT)
    proc = _doctor(emulator, e2b_api_key, "--mcp-template", "base")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [contract for contract, ok in _rows(proc.stdout).items() if ok != "ok"]
    assert failed == ["mcp (base): mcp-gateway on PATH"], proc.stdout
    assert _tagged_alive(emulator) == []


def test_doctor_with_a_refused_key_fails_every_row_and_prints_no_key(
    e2b_emulator_factory: Any, e2b_api_key: str
) -> None:
    emulator = e2b_emulator_factory(**CONFORMANT, api_key=e2b_api_key)
    wrong = "e2b_" + "f" * 40
    proc = _doctor(emulator, wrong)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = _rows(proc.stdout)
    assert rows[next(c for c in rows if c.startswith("create: metadata"))] == "FAIL"
    assert "401" in proc.stdout and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    assert wrong not in proc.stdout + proc.stderr and e2b_api_key not in proc.stdout + proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_doctor_leaves_nothing_behind(
    e2b_emulator_factory: Any, e2b_api_key: str, sig: signal.Signals
) -> None:
    # The identity never shows up in time: the doctor is busy with a live sandbox when it is stopped.
    emulator = e2b_emulator_factory(**{**CONFORMANT, "identity_delay_seconds": 60.0})
    proc = subprocess.Popen(
        [str(SWARM_OPERATOR), "doctor", "--lifetime-cap-seconds", str(CAP)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(emulator, e2b_api_key),
    )
    try:
        wait_for(lambda: _tagged_alive(emulator), 60, message="the doctor's first sandbox")
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted" in stdout and "Traceback" not in stderr, stdout + stderr
    assert _rows(stdout)[next(c for c in _rows(stdout) if c.startswith("nothing left behind"))] == "ok"
    assert _tagged_alive(emulator) == []


def test_doctor_without_a_key_says_so_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    proc = subprocess.run(
        [str(SWARM_OPERATOR), "doctor"], capture_output=True, text=True, timeout=30, env=env
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "E2B_API_KEY" in proc.stderr, proc.stderr
