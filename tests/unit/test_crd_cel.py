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


def _rules() -> list[dict[str, Any]]:
    schema = _crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    found: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        found.extend(node.get("x-kubernetes-validations", ()))
        for sub in node.get("properties", {}).values():
            walk(sub)
        if "items" in node:
            walk(node["items"])

    walk(schema)
    return found


def _evaluate(expression: str, obj: dict[str, Any]) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(expression)).evaluate({"self": celpy.json_to_cel(obj)})


_ENV_ENTRIES = st.fixed_dictionaries(
    {"name": st.one_of(
        st.sampled_from([*model.RESERVED_ENV_NAMES, "TMUX", "TMUX_PANE", "E2B_X", "E2B", "E2BX", "PATHS",
                         "ANTHROPIC_API_KEY", "user", "Path"]),
        st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z"),
    )},
    optional={"value": st.text(max_size=5),
              "valueFrom": st.just({"secretKeyRef": {"name": "s", "key": "k"}})},
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
    for rule in _rules():
        assert bool(_evaluate(rule["rule"], entry)) == _crd.CEL_MIRRORS[rule["rule"]](entry), (rule, entry)


def test_reserved_name_message_names_the_variable() -> None:
    (rule,) = [r for r in _rules() if "messageExpression" in r]
    message = str(_evaluate(rule["messageExpression"], {"name": "LD_PRELOAD", "value": "x"}))
    assert message.startswith("env name LD_PRELOAD is reserved")
