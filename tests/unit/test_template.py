"""``swarm-operator template``: the definition's steps, offline, and its refusals."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import subprocess

import pytest

from swarm_operator import cli, template

PIN = "claudeswarm==0.4.2"
CLI = "@anthropic-ai/claude-code@2.0.14"


def test_definition_renders_the_expected_steps() -> None:
    text = template.render(template.definition(coordinator=PIN, agent_cli=CLI))
    lines = text.strip().splitlines()
    assert lines[0] == f"FROM {template.DEFAULT_BASE}"  # trixie's Python 3.13: claudeswarm needs >= 3.12
    assert "apt-get install" in lines[1] and all(p in lines[1] for p in ("tmux", "git", "nodejs", "npm"))
    assert lines[2] == f"RUN npm install -g {CLI}"
    assert lines[3] == f"RUN pip install --break-system-packages --no-cache-dir -- {PIN}"
    assert lines[4] == f"RUN mkdir -p /home/user/.swarm-template && printf %s {PIN} > {template.MARKER}"
    steps = json.loads(template.render(template.definition(coordinator=PIN, agent_cli=CLI), "json"))["steps"]
    assert [s["args"][1] for s in steps if s["type"] == "RUN"][-1] == "user"  # the marker is the user's


def test_defaults_are_the_pins_the_setup_script_installs() -> None:
    """One copy of each pin: the template's defaults are what a bare sandbox gets installed, and
    what a resource asks for unless it says otherwise, so a sandbox from the template installs nothing."""
    from swarm_operator import bootstrap, model

    text = template.render(template.definition())
    assert f"npm pack --silent {bootstrap.CLAUDE_CODE_PACKAGE} && " in text
    assert f"-- {model.COORDINATOR_PIN}" in text and f"printf %s {model.COORDINATOR_PIN} >" in text
    # A resource that names no install gets the operator's setting, whose default is the same pin.
    assert model.CoordinatorSpec().install is None
    from swarm_operator.config import Settings

    assert Settings().coordinator_install == model.COORDINATOR_PIN
    assert (
        bootstrap.BootstrapPlan(session="s", socket="s", agents=1, command="claude").agent_cli_install
        == bootstrap.CLAUDE_CODE_PACKAGE
    )
    # PyPI's "claude-swarm" is another project (no claudeswarm command): never the default.
    assert not model.COORDINATOR_PIN.startswith("claude-swarm==")


def test_from_template_for_mcp() -> None:
    data = json.loads(
        template.render(
            template.definition(coordinator=PIN, agent_cli=CLI, from_template="mcp-gateway"), "json"
        )
    )
    assert data["fromTemplate"] == "mcp-gateway"


@pytest.mark.parametrize(
    ("coordinator", "agent_cli"),
    [
        ("claudeswarm", CLI),
        ("claudeswarm>=0.4", CLI),
        ("preinstalled", CLI),
        (PIN, "@anthropic-ai/claude-code"),
        (PIN, "@anthropic-ai/claude-code@latest"),
        (PIN, "claude@^2.0.0"),
    ],
)
def test_unpinned_is_refused(coordinator: str, agent_cli: str) -> None:
    with pytest.raises(ValueError, match="pinned|exact"):
        template.definition(coordinator=coordinator, agent_cli=agent_cli)


def test_cli_prints_offline_and_build_needs_the_key_in_env(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["template", "--coordinator", PIN, "--agent-cli", CLI]) == 0
    assert f"npm install -g {CLI}" in capsys.readouterr().out
    assert cli.main(["template"]) == 0  # the operator's own pins
    assert "npm pack --silent @anthropic-ai/claude-code@" in capsys.readouterr().out
    assert cli.main(["template", "--coordinator", "claudeswarm", "--agent-cli", CLI]) == 2
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    assert cli.main(["template", "--coordinator", PIN, "--agent-cli", CLI, "--build", "swarm:v1"]) == 2
    assert "E2B_API_KEY" in capsys.readouterr().err


def test_the_default_pins_are_installed_by_content() -> None:
    """The operator's own pins: the npm tarball checked against its recorded integrity before it is
    installed, the coordinator's dependencies from the shipped lock (hashes, wheels only), the
    coordinator by commit without dependencies; a custom pin is installed as before."""
    from swarm_operator import bootstrap, model

    lines = template.render(template.definition()).strip().splitlines()
    npm = next(line for line in lines if "npm" in line and "apt-get" not in line)
    digest = base64.b64decode(
        bootstrap.NPM_INTEGRITY[bootstrap.CLAUDE_CODE_PACKAGE].removeprefix("sha512-")
    ).hex()
    assert f"{digest} *.tgz | sha512sum -c --strict -" in npm
    assert npm.index("sha512sum") < npm.index("npm install -g")
    lock = lines.index(f"COPY coordinator.lock {template.LOCK_IN_IMAGE}")
    assert lines[lock + 1] == (
        "RUN pip install --break-system-packages --no-cache-dir --require-hashes "
        f"--only-binary=:all: -r {template.LOCK_IN_IMAGE}"
    )
    assert lines[lock + 2] == (
        "RUN pip install --break-system-packages --no-cache-dir --no-deps "
        f"--no-build-isolation -- {model.COORDINATOR_PIN}"
    )
    custom = template.render(template.definition(coordinator=PIN, agent_cli=CLI))
    assert "coordinator.lock" not in custom and "npm pack" not in custom


@pytest.mark.parametrize("tampered", [False, True])
def test_the_npm_step_refuses_a_tarball_that_is_not_the_pinned_one(
    tmp_path: pathlib.Path, tampered: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The template's npm RUN line in real bash, with an npm stand-in whose registry serves the
    pinned package's bytes (or one byte more): a mismatch fails the step before any install."""
    tarball = b"the pinned tarball\n"
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    (tmp_path / "bin").mkdir()
    served = tmp_path / "served.tgz"
    served.write_bytes(tarball + (b"x" if tampered else b""))
    native = b"the native tarball\n"
    (tmp_path / "native.tgz").write_bytes(native)
    npm = tmp_path / "bin" / "npm"
    npm.write_text(f"""#!/bin/bash
echo "npm $*" >> {tmp_path}/calls
case $1 in
    pack) if [[ $3 == pkg-native@1.0.0 ]]; then cp {tmp_path}/native.tgz ./n.tgz; else cp {served} ./pkg-1.0.0.tgz; fi ;;
    install) [[ $3 == --omit=optional && -f $4 && -f $5 ]] || exit 1 ;;
esac
""")
    npm.chmod(0o755)
    machine = os.uname().machine
    native_integrity = "sha512-" + base64.b64encode(hashlib.sha512(native).digest()).decode()
    monkeypatch.setitem(template.NPM_INTEGRITY, "pkg-native@1.0.0", native_integrity)
    line = template._npm_verified("pkg@1.0.0", integrity, {machine: "pkg-native@1.0.0"})
    result = subprocess.run(
        ["bash", "-c", f"set -e; {line}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"},
    )
    calls = (tmp_path / "calls").read_text().splitlines()
    if tampered:
        assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr
        assert calls == ["npm pack --silent pkg@1.0.0"]  # never installed
    else:
        assert result.returncode == 0, result.stderr
        assert calls[:2] == ["npm pack --silent pkg@1.0.0", "npm pack --silent pkg-native@1.0.0"]
        assert calls[2].startswith("npm install -g --omit=optional /") and calls[2].endswith("/native/n.tgz")


def test_the_base_image_is_pinned_by_digest_and_an_unpinned_one_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A tag can be moved to other bytes; a digest cannot. The default base is Debian trixie's dated
    build by the digest docker-library/repo-info records; any other base must bring its own digest."""
    assert template.DEFAULT_BASE.startswith("debian:trixie-")
    assert template.PINNED_IMAGE.match(template.DEFAULT_BASE)
    data = json.loads(template.render(template.definition(), "json"))
    assert data["fromImage"] == template.DEFAULT_BASE
    for unpinned in (
        "debian:trixie",
        "ubuntu:24.04",
        "debian@sha256:abc",
        "debian:trixie@sha256:" + "A" * 64,
    ):
        with pytest.raises(ValueError, match="must be pinned by digest"):
            template.definition(base=unpinned)
    pinned = "ubuntu:24.04@sha256:" + "0" * 64
    assert json.loads(template.render(template.definition(base=pinned), "json"))["fromImage"] == pinned
    # Explicitly vouched for: allowed; an E2B template base is a name E2B resolves (no digest).
    loose = template.definition(base="ubuntu:24.04", allow_unpinned_base=True)
    assert json.loads(template.render(loose, "json"))["fromImage"] == "ubuntu:24.04"
    assert json.loads(template.render(template.definition(from_template="mcp-gateway"), "json"))
    # Through the CLI: a clear refusal, exit 2, no traceback.
    assert cli.main(["template", "--base", "debian:trixie"]) == 2
    err = capsys.readouterr().err
    assert "--base 'debian:trixie' must be pinned by digest" in err and "Traceback" not in err
