"""Supply chain inside the sandbox, run for real: bash, real pip with a local index, the npm stand-in.

The provision step installs only what it can check: the agent CLI's tarball against the pinned npm
integrity (sha512) before ``npm install -g`` sees it, and the default coordinator's dependencies from
a lock whose every entry carries sha256 hashes, wheels only, the coordinator itself ``--no-deps``.
A tampered artefact is refused and reported as a provision (or coordinator) step error; nothing of
it is installed. Uses the pretend bare E2B sandbox of ``test_bootstrap_provision``.
"""

from __future__ import annotations

import base64
import hashlib
import pathlib
import platform
import re
import tarfile
import zipfile

import pytest
from test_bootstrap_provision import (  # noqa: F401  (sandbox: the fixture)
    COORD_REQ,
    FIXTURE_BIN,
    NPM_NATIVE_PACKAGE,
    NPM_NATIVE_PIN,
    Sandbox,
    _plan,
    sandbox,
)

from swarm_operator.bootstrap import (
    CLAUDE_CODE_PACKAGE,
    NPM_INTEGRITY,
    BootstrapPlan,
    coordinator_lock,
    render_setup,
)
from swarm_operator.model import COORDINATOR_PIN


def _dist(
    index: pathlib.Path,
    name: str,
    version: str,
    requires: tuple[str, ...] = (),
    marker: str = "",
    script: str = "",
) -> pathlib.Path:
    """A pure-Python wheel ``name==version`` (module ``name`` with ``MARK = marker``) in the index;
    ``script`` names a console script that execs the claudeswarm stand-in."""
    mod = name.replace("-", "_")
    info = f"{mod}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    files = {
        f"{mod}/__init__.py": f"import os, sys\nMARK = {marker!r}\n\n\ndef main():\n"
        f"    os.execv({str(FIXTURE_BIN / 'claudeswarm')!r}, ['claudeswarm', *sys.argv[1:]])\n",
        f"{info}/METADATA": meta,
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if script:
        files[f"{info}/entry_points.txt"] = f"[console_scripts]\n{script} = {mod}:main\n"
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    project = index / name
    project.mkdir(parents=True, exist_ok=True)
    wheel = project / f"{mod}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    _page(project)
    return wheel


def _page(project: pathlib.Path) -> None:
    links = "".join(
        f'<a href="{f.name}">{f.name}</a>' for f in sorted(project.iterdir()) if f.name != "index.html"
    )
    (project / "index.html").write_text(f"<html><body>{links}</body></html>\n")


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lock(*entries: tuple[str, str]) -> str:
    return "# coordinator: test\n" + "".join(f"{req} \\\n    --hash=sha256:{h}\n" for req, h in entries)


def _installed(sandbox: Sandbox) -> set[str]:
    site = sandbox.home / ".swarm" / "swp" / "coordinator" / "lib"
    return {p.name.split("-")[0] for p in site.glob("python3*/site-packages/*.dist-info")}


@pytest.mark.parametrize(
    "case", ["tampered wrapper", "tampered native package", "no native pin for this machine"]
)
def test_a_tampered_agent_cli_tarball_is_refused_and_never_installed(sandbox: Sandbox, case: str) -> None:
    kw: dict[str, object] = {}
    if case == "tampered wrapper":
        sandbox.flag("tamper-npm")
        why = f"integrity mismatch: the packed {CLAUDE_CODE_PACKAGE} is not the pinned sha512-"
    elif case == "tampered native package":
        sandbox.flag("tamper-npm-native")
        why = f"integrity mismatch: the packed {NPM_NATIVE_PACKAGE} is not the pinned sha512-"
    else:
        kw["agent_cli_native"] = (("s390x", *NPM_NATIVE_PIN[0][1:]),)
        why = f"no pinned native package of {CLAUDE_CODE_PACKAGE} for this machine ({platform.machine()})"
    report = sandbox.setup(_plan(agents=1, coordinator_enabled=False, ready_timeout_s=2, **kw))
    errors = [e.message for e in report.errors if e.step == "provision"]
    assert len(errors) == 1, report.errors
    assert errors[0].startswith(f"installing {CLAUDE_CODE_PACKAGE} failed ({why}"), errors[0]
    assert CLAUDE_CODE_PACKAGE not in report.installed and "tmux" in report.installed
    assert not any(c.startswith(("npm install", "sudo -n npm")) for c in sandbox.calls), sandbox.calls
    assert not (sandbox.sysbin / "claude").exists()
    assert not (sandbox.home / ".swarm" / "swp" / "npm-pack").exists()  # the bad tarball is gone
    assert report.agents.ready == 0  # no agent CLI: reported, never a fake one


def test_the_default_pins_carry_their_hashes_and_custom_ones_install_as_before() -> None:
    pin, text = coordinator_lock()
    assert pin == COORDINATOR_PIN  # the shipped lock was made for the operator's own pin
    entries = re.findall(r"^([a-z0-9-]+)==(\S+) \\$", text, re.M)
    assert {"fastapi", "uvicorn", "starlette", "pydantic", "pydantic-core", "hatchling"} <= {
        n for n, _ in entries
    }
    for block in text.split("\n", 3)[3].split("\n")[0::1]:
        assert not block.startswith(("-e ", "git+", "http:", "https:")), block  # requirements only, no URLs
    for name, version in entries:  # every requirement exact and hashed
        assert re.search(
            rf"^{re.escape(name)}=={re.escape(version)} \\\n(    --hash=sha256:[0-9a-f]{{64}}( \\)?\n)+",
            text,
            re.M,
        ), name
    base = dict(session="s", socket="s", agents=1, command="claude")
    default = BootstrapPlan(**base, coordinator_install=COORDINATOR_PIN)
    assert default.coordinator_lock == text
    assert default.agent_cli_integrity == NPM_INTEGRITY[CLAUDE_CODE_PACKAGE]
    assert {m for m, _, _ in default.agent_cli_native or ()} == {"x86_64", "aarch64"}
    assert all(NPM_INTEGRITY[pkg] == integrity for _, pkg, integrity in default.agent_cli_native or ())
    assert "SWARM_COORD_LOCK=" in render_setup(default) and "--hash=sha256:" in render_setup(default)
    custom = BootstrapPlan(**base, coordinator_install="claudeswarm==0.1.0", agent_cli_install="cli@1.0.0")
    assert (
        custom.coordinator_lock == "" and custom.agent_cli_integrity == "" and custom.agent_cli_native == ()
    )
    with pytest.raises(ValueError, match="sha512 integrity"):
        BootstrapPlan(**base, agent_cli_integrity="sha1-abc")


def test_the_coordinator_s_dependencies_come_from_the_hashed_lock(sandbox: Sandbox) -> None:
    index = sandbox.root / "index"
    dep = _dist(index, "standin-dep", "1.0", marker="good")
    # pip would pull an unlocked dependency of the coordinator; --no-deps keeps it out.
    _dist(index, "standin-unlocked", "1.0")
    (index / "claudeswarm-standin").rename(index / "_orig")
    _dist(index, "claudeswarm-standin", "1.0.0", requires=("standin-unlocked",), script="claudeswarm")
    plan = _plan(agents=1, coordinator_lock=_lock(("standin-dep==1.0", _sha256(dep))))
    report = sandbox.setup(plan)
    assert not report.errors, (sandbox.home / ".swarm" / "swp" / "provision.log").read_text()
    assert report.coordinator.installed and COORD_REQ in report.installed
    assert {"standin_dep", "claudeswarm_standin"} <= _installed(sandbox)
    assert "standin_unlocked" not in _installed(sandbox)
    log = (sandbox.home / ".swarm" / "swp" / "provision.log").read_text()
    assert "--require-hashes --only-binary=:all: -r " in log
    assert f"--no-deps --no-build-isolation -- {COORD_REQ}" in log


@pytest.mark.parametrize("attack", ["tampered", "sdist-only", "unlocked-dependency"])
def test_a_tampered_or_unhashed_dependency_is_refused_and_reported(sandbox: Sandbox, attack: str) -> None:
    index = sandbox.root / "index"
    dep = _dist(index, "standin-dep", "1.0", marker="good")
    good = _sha256(dep)
    if attack == "tampered":  # the index (a compromised mirror) serves other bytes for the locked file
        dep.unlink()
        dep = _dist(index, "standin-dep", "1.0", marker="evil")
        assert _sha256(dep) != good
    elif attack == "sdist-only":  # only an sdist, even one whose hash is in the lock: never built
        dep.unlink()
        sdist = index / "standin-dep" / "standin-dep-1.0.tar.gz"
        with tarfile.open(sdist, "w:gz"):
            pass
        _page(index / "standin-dep")
        good = _sha256(sdist)
    else:  # a locked package needs one the lock lacks: --require-hashes refuses to fetch it unhashed
        dep.unlink()
        dep = _dist(index, "standin-dep", "1.0", requires=("standin-extra",), marker="good")
        good = _sha256(dep)
        _dist(index, "standin-extra", "1.0")
    report = sandbox.setup(_plan(agents=1, coordinator_lock=_lock(("standin-dep==1.0", good))))
    assert not report.coordinator.installed
    error = report.coordinator.error or ""
    log = f"{report.state_dir}/provision.log"
    assert error.startswith(
        f"installing the coordinator failed: {COORD_REQ} (its dependencies from the hashed "
        f"lock {report.state_dir}/coordinator/coordinator.lock: exit status 1; see {log}): "
    ), error
    assert [e.step for e in report.errors] == ["coordinator"]
    expected = {
        "tampered": "Expected sha256",
        "sdist-only": "No matching distribution",
        "unlocked-dependency": "standin-extra",
    }[attack]
    assert expected in error or expected in pathlib.Path(log).read_text()
    assert _installed(sandbox) & {"standin_dep", "standin_extra", "claudeswarm_standin"} == set()
    assert not (sandbox.home / ".swarm" / "swp" / "coordinator" / "bin" / "claudeswarm").exists()
    assert report.agents.ready == 1  # the agents run; the coordinator is what is reported missing


def _uv_calls(sandbox: Sandbox) -> list[str]:
    return [c for c in sandbox.calls if c.startswith("uv pip install")]


def test_on_the_uv_path_the_coordinator_s_dependencies_come_from_the_hashed_lock_too(
    sandbox: Sandbox,
) -> None:
    """Python older than the coordinator needs (E2B's base: 3.11): uv's pip installs into a managed
    Python, with the same hash-checking options as pip (the stand-in models uv's rules)."""
    index = sandbox.root / "index"
    dep = _dist(index, "standin-dep", "1.0", marker="good")
    _dist(index, "standin-unlocked", "1.0")
    (index / "claudeswarm-standin").rename(index / "_orig")
    _dist(index, "claudeswarm-standin", "1.0.0", requires=("standin-unlocked",), script="claudeswarm")
    plan = _plan(
        agents=1, coordinator_python="3.99", coordinator_lock=_lock(("standin-dep==1.0", _sha256(dep)))
    )
    report = sandbox.setup(plan)
    assert not report.errors, (sandbox.home / ".swarm" / "swp" / "provision.log").read_text()
    assert report.coordinator.installed and COORD_REQ in report.installed
    assert {"standin_dep", "claudeswarm_standin"} <= _installed(sandbox)
    assert "standin_unlocked" not in _installed(sandbox)
    venv = sandbox.home / ".swarm" / "swp" / "coordinator"
    assert (venv / ".uv-python").read_text() == "3.99"
    assert _uv_calls(sandbox) == [
        f"uv pip install --quiet --python {venv}/bin/python --require-hashes --only-binary=:all: "
        f"-r {venv}/coordinator.lock",
        f"uv pip install --quiet --python {venv}/bin/python --no-deps --no-build-isolation -- {COORD_REQ}",
    ]


@pytest.mark.parametrize("attack", ["tampered", "unhashed", "unpinned", "git requirement in the lock"])
def test_on_the_uv_path_a_tampered_or_unhashed_dependency_fails_the_coordinator_step(
    sandbox: Sandbox, attack: str
) -> None:
    index = sandbox.root / "index"
    dep = _dist(index, "standin-dep", "1.0", marker="good")
    lock = _lock(("standin-dep==1.0", _sha256(dep)))
    if attack == "tampered":  # a compromised mirror serves other bytes for the locked wheel
        dep.unlink()
        assert _sha256(_dist(index, "standin-dep", "1.0", marker="evil")) not in lock
    elif attack == "unhashed":  # a lock line without a hash: uv refuses before fetching anything
        lock += "standin-extra==1.0\n"
        _dist(index, "standin-extra", "1.0")
    elif attack == "unpinned":  # hashed but a range: uv wants every requirement pinned with ==
        lock = lock.replace("standin-dep==1.0", "standin-dep>=1.0")
    else:  # uv's hash-checking mode supports no git requirement: the commit pin is its own call
        lock += f"{COORD_REQ}\n"
    report = sandbox.setup(_plan(agents=1, coordinator_python="3.99", coordinator_lock=lock))
    assert not report.coordinator.installed
    assert [e.step for e in report.errors] == ["coordinator"]
    error = report.coordinator.error or ""
    status = 1 if attack == "tampered" else 2
    log = f"{report.state_dir}/provision.log"
    assert error.startswith(
        f"installing the coordinator failed (with uv: python3 is older than 3.99): {COORD_REQ} (its "
        f"dependencies from the hashed lock {report.state_dir}/coordinator/coordinator.lock: "
        f"exit status {status}; see {log}): "
    ), error
    expected = {
        "tampered": "Hash mismatch for `standin-dep==1.0`",
        "unhashed": "must have a hash, but none were provided for: standin-extra==1.0",
        "unpinned": "must have their versions pinned with `==`, but found: standin-dep>=1.0",
        "git requirement in the lock": f"none were provided for: {COORD_REQ}",
    }[attack]
    assert expected in pathlib.Path(log).read_text()
    assert _installed(sandbox) & {"standin_dep", "standin_extra", "claudeswarm_standin"} == set()
    assert len(_uv_calls(sandbox)) == 1  # the coordinator itself is never installed after a refusal
    assert report.agents.ready == 1
