"""Spec and status models: they agree with the CRD, refuse what it refuses, and say why."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from swarm_operator import _crd, model
from swarm_operator._crd import apply_defaults
from swarm_operator.model import InvalidSpecError, SwarmSandboxSpec, SwarmSandboxStatus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHA = "0123456789abcdef0123456789abcdef01234567"


def _schema() -> dict[str, Any]:
    return _crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


_SPEC_SCHEMA = _schema()["properties"]["spec"]
_STATUS_SCHEMA = _schema()["properties"]["status"]


def spec_schema() -> dict[str, Any]:
    return _SPEC_SCHEMA


def status_schema() -> dict[str, Any]:
    return _STATUS_SCHEMA


def schema_problems(spec: Any) -> list[str]:
    """Everything the API server would refuse in this spec: JSON Schema after defaulting, list-map
    keys, and the CEL rules (through their Python mirrors)."""
    defaulted = apply_defaults(_SPEC_SCHEMA, copy.deepcopy(spec))
    problems = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(_SPEC_SCHEMA).iter_errors(defaulted)
    ]
    return problems + _crd.extension_violations(_SPEC_SCHEMA, defaulted, "spec")


def _model_problems(spec: Any) -> list[str]:
    try:
        SwarmSandboxSpec.from_body(spec)
    except InvalidSpecError as exc:
        assert exc.problems and str(exc)
        return exc.problems
    return []


def _swarm_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "SwarmSandbox":
                docs.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return docs


def test_examples_exist() -> None:
    assert {p.name for p in EXAMPLES.glob("*.yaml")} >= {"minimal.yaml", "full.yaml", "secrets.yaml"}
    assert len(_swarm_docs()) >= 2


@pytest.mark.parametrize(("name", "doc"), _swarm_docs(), ids=lambda v: v if isinstance(v, str) else "")
def test_examples_are_valid_for_schema_and_model(name: str, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "claudeswarm.io/v1alpha1"
    assert schema_problems(doc.get("spec", {})) == []
    assert _model_problems(doc.get("spec", {})) == []
    # And after the API server's defaulting too (the operator sees the defaulted body).
    defaulted = apply_defaults(spec_schema(), copy.deepcopy(doc.get("spec", {})))
    assert _model_problems(defaulted) == []


def test_full_example_sets_every_spec_field() -> None:
    (full,) = [d for n, d in _swarm_docs() if n.startswith("full.yaml")]
    assert set(full["spec"]) == set(spec_schema()["properties"])


def test_secrets_example_provides_what_full_example_references() -> None:
    secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all((EXAMPLES / "secrets.yaml").read_text())}
    (full,) = [d for n, d in _swarm_docs() if n.startswith("full.yaml")]
    spec = SwarmSandboxSpec.from_body(full["spec"])
    refs = [spec.e2b.api_key_secret_ref] if spec.e2b and spec.e2b.api_key_secret_ref else []
    refs += [e.value_from.secret_key_ref for e in spec.agent.env if e.value_from]
    assert refs
    for ref in refs:
        assert ref.key in secrets[ref.name]["stringData"]


def test_model_defaults_equal_crd_defaults() -> None:
    defaulted = apply_defaults(spec_schema(), {})
    from_model = SwarmSandboxSpec().model_dump(by_alias=True, exclude_none=True, mode="json")

    def same(crd: Any, mdl: Any, path: str) -> None:
        if isinstance(crd, dict):
            for key, value in crd.items():
                same(value, mdl[key], f"{path}.{key}")
        else:
            assert crd == mdl, path

    same(defaulted, from_model, "spec")
    # What the CRD leaves out must be "empty" in the model (absent lists, unset optionals).
    for key, value in from_model.items():
        if key not in defaulted:
            assert value in ([], {}, None), key
    for key in ("args", "env"):
        assert from_model["agent"][key] == [] and key not in defaulted["agent"]
    assert SwarmSandboxSpec.from_body(defaulted) == SwarmSandboxSpec.from_body({}) == SwarmSandboxSpec()


def test_documented_defaults() -> None:
    spec = SwarmSandboxSpec.from_body(None)
    assert spec.agents == 4 and spec.agent.command == "claude"
    assert spec.coordinator.enabled and spec.coordinator.install is None  # the operator's setting
    assert spec.deletion_policy == "Delete" and spec.suspend is False
    assert (
        spec.health_check.interval_seconds,
        spec.health_check.restart_dead_agents,
        spec.health_check.max_restarts,
    ) == (30, True, 3)
    assert spec.template is None and spec.ttl_seconds is None and spec.e2b is None


def _env(**kw: Any) -> dict[str, Any]:
    return {"agent": {"env": [kw]}}


_REF = {"secretKeyRef": {"name": "s", "key": "k"}}

# Each is refused by the API server (schema or CEL) and by the model.
INVALID: dict[str, Any] = {
    "agents 0": {"agents": 0},
    "agents 101": {"agents": 101},
    "agents string": {"agents": "4"},
    "agents float": {"agents": 4.5},
    "agents bool": {"agents": True},
    "deletionPolicy enum": {"deletionPolicy": "Retain"},
    "deletionPolicy case": {"deletionPolicy": "delete"},
    "env name with dash": _env(name="MY-VAR", value="x"),
    "env name leading digit": _env(name="1ABC", value="x"),
    "env name empty": _env(name="", value="x"),
    "env PATH": _env(name="PATH", value="/tmp"),
    "env LD_PRELOAD": _env(name="LD_PRELOAD", value="/x.so"),
    "env LD_LIBRARY_PATH": _env(name="LD_LIBRARY_PATH", value="/x"),
    "env HOME": _env(name="HOME", value="/"),
    "env SHELL": _env(name="SHELL", value="/bin/sh"),
    "env USER": _env(name="USER", value="root"),
    "env TMUX": _env(name="TMUX", value="x"),
    "env TMUX_TMPDIR": _env(name="TMUX_TMPDIR", value="x"),
    "env E2B_API_KEY": _env(name="E2B_API_KEY", value="x"),
    "env SWARM_SECRET_GIT_PASSWORD": _env(name="SWARM_SECRET_GIT_PASSWORD", value="x"),
    "env LD_AUDIT": _env(name="LD_AUDIT", value="/tmp/x.so"),
    "env BASH_ENV": _env(name="BASH_ENV", value="/tmp/x"),
    "env BASHOPTS": _env(name="BASHOPTS", value="extglob"),
    "env BASH_FUNC_x%%": _env(name="BASH_FUNC_x", value="() { id; }"),
    "env GLIBC_TUNABLES": _env(name="GLIBC_TUNABLES", value="glibc.malloc.check=3"),
    "env ENV": _env(name="ENV", value="/tmp/x"),
    "env SHELLOPTS": _env(name="SHELLOPTS", value="xtrace"),
    "env IFS": _env(name="IFS", value="/"),
    "env _sw private": _env(name="_sw_pid", value="1"),
    "secret references over the schema's bound": {
        "agent": {
            "env": [
                {"name": f"K{i}", "valueFrom": {"secretKeyRef": {"name": "one", "key": f"k{i}"}}}
                for i in range(model.MAX_SECRET_REFERENCES + 1)
            ]
        }
    },
    "secret references over the bound across fields": {
        "agent": {
            "apiKeySecretRef": {"name": "one", "key": "a"},
            "env": [
                {"name": f"K{i}", "valueFrom": {"secretKeyRef": {"name": "one", "key": f"k{i}"}}}
                for i in range(model.MAX_SECRET_REFERENCES - 32)
            ],
        },
        "mcp": [
            {
                "name": "c",
                "type": "custom",
                "server": "notion",
                "fields": [
                    {"name": f"f{j}", "valueFrom": {"secretKeyRef": {"name": "one", "key": f"f{j}"}}}
                    for j in range(32)
                ],
            }
        ],
    },
    "env value and valueFrom": _env(name="A", value="x", valueFrom=_REF),
    "env neither": _env(name="A"),
    "env duplicate": {"agent": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}},
    "env secret bad name": _env(name="A", valueFrom={"secretKeyRef": {"name": "Bad_Name", "key": "k"}}),
    "env secret bad key": _env(name="A", valueFrom={"secretKeyRef": {"name": "s", "key": "a/b"}}),
    "env secret no key": _env(name="A", valueFrom={"secretKeyRef": {"name": "s"}}),
    "env valueFrom empty": _env(name="A", valueFrom={}),
    "env value not string": _env(name="A", value=1),
    "command with space": {"agent": {"command": "claude --yolo"}},
    "command empty": {"agent": {"command": ""}},
    "args not strings": {"agent": {"args": [1]}},
    "args too many": {"agent": {"args": ["x"] * 65}},
    "template semicolon": {"template": "base;rm -rf /"},
    "template dollar": {"template": "$(id)"},
    "template backtick": {"template": "`id`"},
    "template space": {"template": "my template"},
    "template leading dash": {"template": "-rf"},
    "template empty": {"template": ""},
    "template too long": {"template": "a" * 129},
    "ttl too small": {"ttlSeconds": 59},
    "ttl too large": {"ttlSeconds": 86401},
    "e2b ref missing key": {"e2b": {"apiKeySecretRef": {"name": "e2b"}}},
    "e2b ref bad name": {"e2b": {"apiKeySecretRef": {"name": "E2B", "key": "k"}}},
    "coordinator install with space": {"coordinator": {"install": "claudeswarm == 1.0"}},
    "coordinator install empty": {"coordinator": {"install": ""}},
    "coordinator install too long": {"coordinator": {"install": "a==" + "1" * 600}},
    "coordinator enabled string": {"coordinator": {"enabled": "yes"}},
    "interval too small": {"healthCheck": {"intervalSeconds": 4}},
    "interval too large": {"healthCheck": {"intervalSeconds": 3601}},
    "maxRestarts negative": {"healthCheck": {"maxRestarts": -1}},
    "maxRestarts too large": {"healthCheck": {"maxRestarts": 101}},
    "suspend string": {"suspend": "true"},
    "agent not object": {"agent": "claude"},
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_specs_are_refused_by_schema_and_model(case: str) -> None:
    spec = INVALID[case]
    assert schema_problems(spec), f"the API server would accept {spec}"
    problems = _model_problems(spec)
    assert problems, f"the operator would accept {spec}"
    # A field's problem names the field; a whole-spec bound names the fields it counts.
    assert all(p.startswith("spec.") or (p.startswith("spec: ") and "spec." in p) for p in problems), problems


@pytest.mark.parametrize(
    "name", ["PATH", "E2B_ACCESS_TOKEN", "TMUX_PANE", "SWARM_X", "LD_PRELOAD", "BASH_ENV", "GLIBC_TUNABLES"]
)
def test_reserved_env_message_names_the_variable(name: str) -> None:
    (problem,) = _model_problems(_env(name=name, value="x"))
    assert problem.startswith("spec.agent.env[0].name:") and f"env name {name} is reserved" in problem
    assert "PATH, HOME," in problem and "starting with SWARM_, LD_, BASH, GLIBC_, E2B_, TMUX" in problem


@pytest.mark.parametrize(
    "name",
    [
        "PATHS",
        "MY_PATH",
        "HOMEDIR",
        "E2B",
        "TMU",
        "LD",
        "SWARM",
        "GLIBC",
        "ANTHROPIC_BASE_URL",
        "NODE_OPTIONS",
        "user",
        "Path",
    ],
)
def test_near_reserved_env_names_are_allowed(name: str) -> None:
    assert _model_problems(_env(name=name, value="x")) == []
    assert schema_problems(_env(name=name, value="x")) == []


def _env_refs(count: int, secrets: int) -> dict[str, Any]:
    """``count`` env entries from Secret keys spread over ``secrets`` distinct Secrets."""
    return {
        "agent": {
            "env": [
                {"name": f"K{i}", "valueFrom": {"secretKeyRef": {"name": f"s{i % secrets}", "key": f"k{i}"}}}
                for i in range(count)
            ]
        }
    }


def test_secret_references_up_to_the_bounds_are_accepted() -> None:
    spec = _env_refs(model.MAX_SECRET_REFERENCES, model.MAX_SECRETS)
    assert schema_problems(spec) == [] and _model_problems(spec) == []


def test_too_many_secret_references_are_refused_naming_limit_and_count() -> None:
    spec = _env_refs(model.MAX_SECRET_REFERENCES + 1, 1)
    (problem,) = [p for p in schema_problems(spec) if "Secret key references" in p]
    assert f"at most {model.MAX_SECRET_REFERENCES}" in problem
    (problem,) = _model_problems(spec)
    assert problem == (
        f"spec: {model.MAX_SECRET_REFERENCES + 1} Secret key references (in "
        f"spec.agent.env), over the limit of {model.MAX_SECRET_REFERENCES} per resource"
    )


def test_too_many_distinct_secrets_are_refused_by_the_operator() -> None:
    """The schema cannot count distinct names (CEL has no set); the operator does, before any read."""
    spec = _env_refs(model.MAX_SECRETS + 1, model.MAX_SECRETS + 1)
    spec["e2b"] = {"apiKeySecretRef": {"name": "s0", "key": "e2b"}}  # a name already counted
    assert schema_problems(spec) == []
    (problem,) = _model_problems(spec)
    assert problem.startswith(
        f"spec: {model.MAX_SECRETS + 1} distinct Secrets referenced "
        "(in spec.agent.env, spec.e2b.apiKeySecretRef)"
    )
    assert f"over the limit of {model.MAX_SECRETS} per resource" in problem


def test_secret_references_name_every_field() -> None:
    spec = SwarmSandboxSpec.from_body(
        {
            "agent": {
                "apiKeySecretRef": {"name": "a", "key": "k"},
                "env": [{"name": "X", "value": "v"}, {"name": "Y", "valueFrom": _REF}],
            },
            "e2b": {"apiKeySecretRef": {"name": "e", "key": "k"}},
            "workspace": {
                "repo": "https://github.com/o/r",
                "ref": SHA,
                "credentialsSecretRef": {"name": "w", "key": "k"},
            },
            "mcp": [
                {"name": "gh", "type": "github", "tokenSecretRef": {"name": "g", "key": "k"}},
                {
                    "name": "n",
                    "type": "custom",
                    "server": "notion",
                    "fields": [{"name": "a", "value": "x"}, {"name": "b", "valueFrom": _REF}],
                },
            ],
        }
    )
    assert [(path, ref.name) for path, ref in spec.secret_references()] == [
        ("spec.agent.env[1]", "s"),
        ("spec.agent.apiKeySecretRef", "a"),
        ("spec.e2b.apiKeySecretRef", "e"),
        ("spec.workspace.credentialsSecretRef", "w"),
        ("spec.mcp[0].tokenSecretRef", "g"),
        ("spec.mcp[1].fields[1]", "s"),
    ]


def test_step_seconds_keep_only_bounded_well_named_steps() -> None:
    junk = {f"init.s{i}": 1.0 for i in range(100)}
    steps = {
        "init.tmux": 0.5,
        **junk,
        "create": 0.25,
        "init": 2.0,
        "Bad Name": 1.0,
        "init.$(id)": 1.0,
        "a" * 40: 1.0,
        "init.nan": float("nan"),
        "init.neg": -1.0,
        "init.inf": float("inf"),
        "init.bool": True,
        "init.str": "1",
    }
    metrics = model.MetricsStatus(step_seconds=steps)
    kept = metrics.step_seconds
    assert len(kept) == model.MAX_STEPS
    assert {"create", "init", "init.tmux"} <= kept.keys()  # the operator's own steps always fit
    assert list(kept) == [k for k in steps if k in kept]  # in the order given (the status page's)
    assert all(model.STEP_NAME.match(k) and v >= 0 for k, v in kept.items())
    # Assignment (how the lifecycle adds a step) is bounded the same way.
    metrics.step_seconds = {**kept, "pause": 1.0, "init.more": 1.0}
    assert len(metrics.step_seconds) == model.MAX_STEPS and "pause" in metrics.step_seconds
    assert "init.more" not in metrics.step_seconds
    # And a stored status with too many steps is read without an error.
    read = SwarmSandboxStatus.from_body({"metrics": {"stepSeconds": steps}})
    assert read.metrics is not None and len(read.metrics.step_seconds) == model.MAX_STEPS


def test_duplicate_env_message_names_the_variable() -> None:
    problems = _model_problems(INVALID["env duplicate"])
    assert problems == ["spec.agent.env: duplicate env names: A"]


def test_pattern_messages_are_plain_words() -> None:
    (problem,) = _model_problems(INVALID["template semicolon"])
    assert problem.startswith("spec.template: must be an E2B template id") and "'base;rm -rf /'" in problem
    assert "^" not in problem


def test_unknown_fields_are_refused_by_name() -> None:
    assert _model_problems({"agnets": 3}) == ["spec.agnets: unknown field"]


UNPINNED = [
    "claudeswarm",
    "claudeswarm>=1",
    "claudeswarm>=1.0,<2",
    "claudeswarm~=1.2",
    "claudeswarm==1.*",
    "claudeswarm===1.0",
    "claudeswarm!=1.0",
    "git+https://github.com/org/claudeswarm",
    "git+https://github.com/org/claudeswarm@main",
    "git+https://github.com/org/claudeswarm@v1.2.3",
    "git+https://github.com/org/claudeswarm@0123456",  # a short SHA can become ambiguous
    f"git+http://github.com/org/claudeswarm@{SHA}",
    f"git+ssh://git@github.com/org/claudeswarm@{SHA}",
    "https://example.com/claudeswarm-1.0.tar.gz",
    "./claudeswarm",
]


@pytest.mark.parametrize("install", UNPINNED)
def test_unpinned_install_is_left_to_the_operator(install: str) -> None:
    spec = {"coordinator": {"install": install}}
    # The API server stores it (so the refusal is visible on the resource as a condition) ...
    assert schema_problems(spec) == []
    # ... and the operator refuses it, naming the field and the fix.
    (problem,) = _model_problems(spec)
    assert problem.startswith("spec.coordinator.install: ")
    assert repr(install) in problem
    assert "name==X.Y.Z" in problem and "preinstalled" in problem


def test_unpinned_git_message_names_the_ref() -> None:
    (problem,) = _model_problems({"coordinator": {"install": "git+https://github.com/o/r@main"}})
    assert "git ref 'main' is not a full 40-hex commit SHA" in problem


@pytest.mark.parametrize(
    "install",
    [
        "preinstalled",
        "claudeswarm==0.4.2",
        "claude-swarm==1.0.0rc1",
        "claudeswarm[mcp,extra]==2.1.0",
        "claudeswarm==1.0+local.1",
        f"git+https://github.com/org/claudeswarm@{SHA}",
        f"git+https://github.com/org/claudeswarm.git@{SHA}",
        f"git+https://git.example.com:8443/org/claudeswarm@{SHA}#egg=claudeswarm",
        f"git+https://github.com/org/mono@{SHA}#subdirectory=py/claudeswarm",
    ],
)
def test_pinned_installs_are_accepted_by_both(install: str) -> None:
    spec = {"coordinator": {"install": install}}
    assert schema_problems(spec) == [] and _model_problems(spec) == []
    assert model.is_pinned_install(install)


def test_disabled_coordinator_still_needs_a_pinned_install() -> None:
    # An unpinned value would bite the day someone flips enabled: refuse it now.
    assert _model_problems({"coordinator": {"enabled": False, "install": "claudeswarm"}})


def test_from_body_takes_kopfs_mapping_views() -> None:
    import kopf

    body = {"spec": {"agents": 2, "agent": {"env": [{"name": "A", "value": "1"}]}}}
    spec = SwarmSandboxSpec.from_body(kopf.Spec(body))
    assert spec.agents == 2 and spec.agent.env[0].name == "A"
    assert SwarmSandboxSpec.from_body(MappingProxyType({"agents": 3})).agents == 3


def test_spec_is_immutable_and_populates_by_python_name() -> None:
    spec = SwarmSandboxSpec(ttl_seconds=600, deletion_policy="Orphan")
    assert spec.model_dump(by_alias=True)["ttlSeconds"] == 600
    with pytest.raises(ValidationError):
        spec.agents = 5  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------
# Property tests: where the schema and the model each judge a field, they judge it the same.
# ------------------------------------------------------------------------------------------------

_NAMEISH = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,10}\Z"),
    st.sampled_from(["TMUX", "TMUXX", "E2B", "E2B_", "E2BX", "PATHX", "XPATH", "path", "Home", "_"]),
)


@settings(max_examples=200, deadline=None)
@given(name=_NAMEISH)
def test_env_name_verdicts_agree(name: str) -> None:
    spec = _env(name=name, value="v")
    assert bool(schema_problems(spec)) == bool(_model_problems(spec))


@settings(max_examples=200, deadline=None)
@given(template=st.one_of(st.text(max_size=20), st.from_regex(r"\A[a-z0-9][a-z0-9._:/-]{0,20}\Z")))
def test_template_verdicts_agree(template: str) -> None:
    spec = {"template": template}
    assert bool(schema_problems(spec)) == bool(_model_problems(spec))


#: The CRD as committed (what `kubectl apply` installs), not one generated from the model now: a bound
#: changed in the model but not regenerated into crds/ must show up here.
_COMMITTED_SPEC = yaml.safe_load((EXAMPLES.parent / "crds" / "swarmsandbox.yaml").read_text())["spec"][
    "versions"
][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def committed_schema_problems(spec: Any) -> list[str]:
    defaulted = apply_defaults(_COMMITTED_SPEC, copy.deepcopy(spec))
    problems = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(_COMMITTED_SPEC).iter_errors(defaulted)
    ]
    return problems + _crd.extension_violations(_COMMITTED_SPEC, defaulted, "spec")


def _integer_fields(
    schema: dict[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], int, int]]:
    """(path, minimum, maximum) of every integer field of the committed spec outside lists."""
    if schema.get("type") == "integer":
        yield path, schema["minimum"], schema["maximum"]
    for name, child in (schema.get("properties") or {}).items():
        yield from _integer_fields(child, (*path, name))


_INTEGERS = list(_integer_fields(_COMMITTED_SPEC))


def _at(path: tuple[str, ...], value: int) -> dict[str, Any]:
    spec: dict[str, Any] = {path[-1]: value}
    for name in reversed(path[:-1]):
        spec = {name: spec}
    return spec


def test_the_committed_crd_has_bounded_integers() -> None:
    assert {".".join(p) for p, _, _ in _INTEGERS} >= {"agents", "ttlSeconds", "healthCheck.intervalSeconds"}


@pytest.mark.parametrize(("path", "low", "high"), _INTEGERS, ids=[".".join(p) for p, _, _ in _INTEGERS])
def test_integer_bounds_agree_at_the_edges(path: tuple[str, ...], low: int, high: int) -> None:
    for value in (low - 1, low, high, high + 1):
        spec = _at(path, value)
        assert bool(committed_schema_problems(spec)) == bool(_model_problems(spec)), spec


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_integer_bounds_agree(data: st.DataObject) -> None:
    for path, low, high in _INTEGERS:
        spec = _at(path, data.draw(st.integers(low - 100, high + 100), label=".".join(path)))
        assert bool(committed_schema_problems(spec)) == bool(_model_problems(spec)), spec


@settings(max_examples=200, deadline=None)
@given(
    install=st.one_of(
        st.text(max_size=30),
        st.from_regex(r"\A[a-z]{1,8}(==|>=|~=|@)[0-9a-z.]{0,10}\Z"),
        st.builds(lambda r: f"git+https://h.io/o/r@{r}", st.from_regex(r"\A[0-9a-f]{38,42}\Z")),
    )
)
def test_model_refuses_at_least_what_the_schema_refuses_for_install(install: str) -> None:
    spec = {"coordinator": {"install": install}}
    if not _model_problems(spec):
        assert not schema_problems(spec)
        assert model.is_pinned_install(install)


# ------------------------------------------------------------------------------------------------
# Status
# ------------------------------------------------------------------------------------------------

T0 = datetime(2026, 11, 5, 12, 0, 0, tzinfo=UTC)


def _full_status() -> SwarmSandboxStatus:
    return SwarmSandboxStatus(
        phase=model.Phase.READY,
        observed_generation=3,
        message="all agents are running",
        conditions=[
            model.Condition(
                type="Ready",
                status="True",
                reason="Available",
                last_transition_time=T0,
                observed_generation=3,
            )
        ],
        sandbox=model.SandboxStatus(
            id="isb-123", template="base", started_at=T0, expires_at=T0 + timedelta(minutes=10)
        ),
        agents=model.AgentsStatus(
            desired=2,
            ready=2,
            items=[
                model.AgentItem(id=0, pane="%1", state="Running"),
                model.AgentItem(id=1, pane="%2", state="Running", restarts=1),
            ],
        ),
        health=model.HealthStatus(status="Healthy", last_probe_time=T0, consecutive_failures=0),
        metrics=model.MetricsStatus(
            step_seconds={"create": 0.44, "init": 1.5}, commands_executed=7, commands_failed=1, restarts=1
        ),
    )


def test_status_patch_validates_against_the_status_schema() -> None:
    patch = _full_status().to_patch()
    jsonschema.Draft7Validator(status_schema()).validate(patch)
    assert patch["sandbox"]["startedAt"] == "2026-11-05T12:00:00Z"
    assert patch["conditions"][0]["lastTransitionTime"] == "2026-11-05T12:00:00Z"
    assert patch["agents"]["summary"] == "2/2"
    assert patch["phase"] == "Ready"


def test_status_round_trips_through_its_patch() -> None:
    status = _full_status()
    assert SwarmSandboxStatus.model_validate(status.to_patch()) == status


def test_status_patch_holds_only_what_was_set() -> None:
    assert SwarmSandboxStatus().to_patch() == {}
    assert SwarmSandboxStatus(phase=model.Phase.CREATING).to_patch() == {"phase": "Creating"}
    status = SwarmSandboxStatus.from_body({"phase": "Ready", "conditions": []})
    status.message = "hello"
    assert status.to_patch() == {"phase": "Ready", "conditions": [], "message": "hello"}


def test_status_from_kopf_view() -> None:
    import kopf

    status = SwarmSandboxStatus.from_body(kopf.Status({"status": {"agents": {"desired": 2, "ready": 1}}}))
    assert status.agents is not None and status.agents.summary == "1/2"
    assert SwarmSandboxStatus.from_body(None) == SwarmSandboxStatus()


def test_agents_summary_follows_the_counts() -> None:
    agents = model.AgentsStatus(desired=4, ready=1)
    assert agents.summary == "1/4"
    agents.ready = 3
    assert agents.summary == "3/4"
    assert model.AgentsStatus.model_validate({"desired": 4, "ready": 4, "summary": "stale"}).summary == "4/4"


def test_timestamps_are_utc_whole_seconds() -> None:
    local = datetime(2026, 11, 5, 13, 0, 0, 987654, tzinfo=timezone(timedelta(hours=1)))
    sandbox = model.SandboxStatus(started_at=local, expires_at=datetime(2026, 1, 1))
    dumped = sandbox.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert dumped == {"startedAt": "2026-11-05T12:00:00Z", "expiresAt": "2026-01-01T00:00:00Z"}


def test_status_reader_tolerates_fields_it_does_not_know() -> None:
    # An older operator reading status written by a newer one must not crash.
    status = SwarmSandboxStatus.model_validate({"phase": "Ready", "someFutureField": {"x": 1}})
    assert status.phase is model.Phase.READY


def test_status_refuses_an_unknown_phase() -> None:
    with pytest.raises(ValidationError):
        SwarmSandboxStatus.model_validate({"phase": "Running"})
