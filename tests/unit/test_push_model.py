"""spec.workspace.push in the model and the committed CRD: the same branch rules on both sides."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from swarm_operator import _crd
from swarm_operator.model import InvalidSpecError, SwarmSandboxSpec

_BASE: dict[str, Any] = {
    "agents": 1,
    "agent": {"command": "claude"},
    "workspace": {
        "repo": "https://git.example.com/acme/repo.git",
        "ref": "v1.0.0",
        "push": {"branch": "swarm/results"},
    },
}


def _spec(**push: Any) -> dict[str, Any]:
    spec = copy.deepcopy(_BASE)
    spec["workspace"]["push"].update(push)
    return spec


def _schema_problems(spec: dict[str, Any]) -> list[str]:
    schema = _crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return _crd.extension_violations(schema, _crd.apply_defaults(schema, copy.deepcopy(spec)))


def test_a_push_defaults_and_its_credentials_count_as_a_secret_reference() -> None:
    spec = SwarmSandboxSpec.from_body(_spec(credentialsSecretRef={"name": "push", "key": "token"}))
    assert spec.workspace is not None and spec.workspace.push is not None
    assert spec.workspace.push.interval_seconds == 300
    assert ("spec.workspace.push.credentialsSecretRef", spec.workspace.push.credentials_secret_ref) in (
        spec.secret_references()
    )


@pytest.mark.parametrize(
    "branch",
    ["refs/heads/main", "HEAD", "a..b", "a//b", "a/.hidden", "a/", "a.", "x.lock", "-x", "a b", "a~1"],
)
def test_bad_branch_names_are_refused_by_model_and_schema_alike(branch: str) -> None:
    with pytest.raises(InvalidSpecError):
        SwarmSandboxSpec.from_body(_spec(branch=branch))
    # Those the pattern lets through are refused by the CEL rule (mirrored here).
    if branch[0].isalnum() and " " not in branch and "~" not in branch:
        assert _schema_problems(_spec(branch=branch)), branch


@pytest.mark.parametrize("branch", ["main", "swarm/results", "feature/x-1.2", "a_b"])
def test_plain_branch_names_pass(branch: str) -> None:
    SwarmSandboxSpec.from_body(_spec(branch=branch))
    assert _schema_problems(_spec(branch=branch)) == []


@pytest.mark.parametrize("interval", [9, 86_401])
def test_the_interval_is_bounded(interval: int) -> None:
    with pytest.raises(InvalidSpecError):
        SwarmSandboxSpec.from_body(_spec(intervalSeconds=interval))
