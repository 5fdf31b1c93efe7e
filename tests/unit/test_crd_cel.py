"""The CRD's CEL rules, evaluated by a real CEL interpreter, agree with their Python mirrors.

The mirrors (``_crd.CEL_MIRRORS``) are what the tests and the Kubernetes emulator evaluate, since
neither runs CEL; this keeps them honest. Needs ``cel-python`` (a test dependency).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_operator import _crd, model

celpy = pytest.importorskip("celpy")


def _rules(where: str | None = None) -> list[dict[str, Any]]:
    """Every rule in the CRD, or only those on the node at ``where`` (e.g. ``.spec``)."""
    schema = _crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    found: list[dict[str, Any]] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if where is None or path == where:
            found.extend(node.get("x-kubernetes-validations", ()))
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    walk(schema, "")
    return found


def _k8s_sum(items: Any) -> Any:
    # The Kubernetes list library's sum() (k8s.io/apiserver/pkg/cel/library/lists.go); [].sum() == 0.
    total = celpy.celtypes.IntType(0)
    for item in items:
        total = total + item
    return total


def _evaluate(expression: str, obj: dict[str, Any]) -> Any:
    env = celpy.Environment()
    program = env.program(env.compile(expression), functions={"sum": _k8s_sum})
    return program.evaluate({"self": celpy.json_to_cel(obj)})


_ENV_ENTRIES = st.fixed_dictionaries(
    {
        "name": st.one_of(
            st.sampled_from(
                [
                    *model.RESERVED_ENV_NAMES,
                    "TMUX",
                    "TMUX_PANE",
                    "E2B_X",
                    "E2B",
                    "E2BX",
                    "PATHS",
                    "ANTHROPIC_API_KEY",
                    "user",
                    "Path",
                ]
            ),
            st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z"),
        )
    },
    optional={
        "value": st.text(max_size=5),
        "valueFrom": st.just({"secretKeyRef": {"name": "s", "key": "k"}}),
    },
)


def test_every_rule_compiles() -> None:
    rules = _rules()
    assert len(rules) == len(_crd.CEL_MIRRORS)
    env = celpy.Environment()
    for rule in rules:
        env.compile(rule["rule"])
        if "messageExpression" in rule:
            env.compile(rule["messageExpression"])


@settings(max_examples=150, deadline=None)
@given(entry=_ENV_ENTRIES)
def test_cel_and_mirror_agree_on_env_entries(entry: dict[str, Any]) -> None:
    for rule in _rules(".spec.agent.env[]"):
        assert bool(_evaluate(rule["rule"], entry)) == _crd.CEL_MIRRORS[rule["rule"]](entry), (rule, entry)


def test_reserved_name_message_names_the_variable() -> None:
    (rule,) = [r for r in _rules() if "messageExpression" in r]
    message = str(_evaluate(rule["messageExpression"], {"name": "LD_PRELOAD", "value": "x"}))
    assert message.startswith("env name LD_PRELOAD is reserved")


_SECRET_REF = st.fixed_dictionaries({"name": st.sampled_from(["a", "b"]), "key": st.just("k")})
_SPECS = st.fixed_dictionaries(
    {},
    optional={
        "agent": st.fixed_dictionaries(
            {},
            optional={
                "env": st.lists(
                    st.one_of(
                        st.builds(lambda i: {"name": f"V{i}", "value": "x"}, st.integers(0, 9)),
                        st.builds(lambda r: {"name": "S", "valueFrom": {"secretKeyRef": r}}, _SECRET_REF),
                    ),
                    max_size=80,
                ),
                "apiKeySecretRef": _SECRET_REF,
            },
        ),
        "e2b": st.fixed_dictionaries({}, optional={"apiKeySecretRef": _SECRET_REF}),
        "workspace": st.fixed_dictionaries(
            {"repo": st.just("https://h/r")}, optional={"credentialsSecretRef": _SECRET_REF}
        ),
        "mcp": st.lists(
            st.fixed_dictionaries(
                {"name": st.just("m")},
                optional={
                    "tokenSecretRef": _SECRET_REF,
                    "fields": st.lists(
                        st.one_of(
                            st.just({"name": "f", "value": "v"}),
                            st.builds(lambda r: {"name": "f", "valueFrom": {"secretKeyRef": r}}, _SECRET_REF),
                        ),
                        max_size=12,
                    ),
                },
            ),
            max_size=6,
        ),
    },
)


@settings(max_examples=200, deadline=None)
@given(spec=_SPECS)
def test_cel_and_mirror_agree_on_secret_reference_counts(spec: dict[str, Any]) -> None:
    (rule,) = _rules(".spec")
    assert bool(_evaluate(rule["rule"], spec)) == _crd.CEL_MIRRORS[rule["rule"]](spec), spec


def test_secret_reference_rule_counts_every_field_to_the_limit() -> None:
    (rule,) = _rules(".spec")
    ref = {"secretKeyRef": {"name": "s", "key": "k"}}
    spec: dict[str, Any] = {
        "agent": {
            "apiKeySecretRef": ref["secretKeyRef"],
            "env": [{"name": f"V{i}", "valueFrom": ref} for i in range(model.MAX_SECRET_REFERENCES - 35)],
        },
        "e2b": {"apiKeySecretRef": ref["secretKeyRef"]},
        "workspace": {"repo": "https://h/r", "credentialsSecretRef": ref["secretKeyRef"]},
        "mcp": [
            {"name": "g", "tokenSecretRef": ref["secretKeyRef"]},
            {"name": "c", "fields": [{"name": f"f{j}", "valueFrom": ref} for j in range(31)]},
        ],
    }
    assert _crd._secret_references(spec) == model.MAX_SECRET_REFERENCES
    assert _evaluate(rule["rule"], spec)
    spec["mcp"][1]["fields"].append({"name": "one-more", "valueFrom": ref})
    assert not _evaluate(rule["rule"], spec)


@settings(max_examples=100, deadline=None)
@given(
    args=st.lists(st.text(max_size=3000), max_size=20),
    values=st.lists(st.lists(st.text(max_size=3000), max_size=4), max_size=6),
)
def test_cel_and_mirror_agree_on_aggregate_sizes(args: list[str], values: list[list[str]]) -> None:
    """agent.args and the MCP literal values are bounded together (issue 16: they all go into one
    setup script, which must fit in one command)."""
    (args_rule,) = _rules(".spec.agent.args")
    (mcp_rule,) = _rules(".spec.mcp")
    mcp = [
        {"name": f"m{i}", "fields": [{"name": f"f{j}", "value": v} for j, v in enumerate(vs)]}
        for i, vs in enumerate(values)
    ]
    mcp.append({"name": "no-fields"})
    assert bool(_evaluate(args_rule["rule"], args)) == _crd.CEL_MIRRORS[args_rule["rule"]](args)
    assert bool(_evaluate(mcp_rule["rule"], mcp)) == _crd.CEL_MIRRORS[mcp_rule["rule"]](mcp)
