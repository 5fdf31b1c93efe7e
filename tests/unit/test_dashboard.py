"""The Grafana dashboard: the committed JSON is what the generator builds, every query is valid PromQL,
and every series it reads (with every label it filters or groups by) is one the metrics module exports."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import promql_parser
import pytest
from prometheus_client import CollectorRegistry

from swarm_operator import _dashboard
from swarm_operator.cost import Prices, Size, accrue
from swarm_operator.metrics import Metrics
from swarm_operator.model import Phase

#: Labels Prometheus adds to every scraped series (target labels), not the operator.
TARGET_LABELS = {"job", "instance", "pod", "service", "endpoint", "container"}
#: Grafana's built-in interval variables, replaced by a duration so the query parses as PromQL.
GRAFANA_RANGES = {"$__rate_interval": "5m", "$__range": "6h", "$__interval": "1m"}


def _exported() -> dict[str, set[str]]:
    """Every series name the operator exports, with its label names, from a live Metrics registry
    in which every family has at least one sample."""
    metrics = Metrics(CollectorRegistry())
    metrics.observe_phase("u1", "team-a", Phase.READY)
    metrics.observe_cost("u1", "team-a", accrue(None, datetime.now(UTC), "Running", Size(2, 512), Prices()))
    metrics.became_ready(10.0)
    metrics.e2b_observer("create", "ok", 0.1)
    metrics.step("create", 1.0)
    metrics.agents_restarted()
    metrics.orphan_killed()
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def _parse(query: str) -> promql_parser.Expr:
    for variable, duration in GRAFANA_RANGES.items():
        query = query.replace(variable, duration)
    return promql_parser.parse(query)


def _label_values(query: str) -> tuple[str, str] | None:
    """Grafana's ``label_values(selector, label)`` variable query, split; None for plain PromQL."""
    if not query.startswith("label_values("):
        return None
    selector, label = query[len("label_values(") : -1].rsplit(",", 1)
    return selector.strip(), label.strip()


def _reads(expr: promql_parser.Expr) -> list[tuple[str, set[str]]]:
    """(series name, label names used on it) for every selector in ``expr``; grouping labels count
    as used on every selector below the aggregation."""
    found: list[tuple[str, set[str]]] = []
    grouping: list[set[str]] = []

    def pre(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.AggregateExpr):
            labels = set(node.modifier.labels) if node.modifier is not None else set()
            grouping.append(labels)
        if isinstance(node, promql_parser.VectorSelector):
            used = {m.name for m in node.matchers.matchers}
            found.append((node.name, used | set().union(*grouping)))

    def post(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.AggregateExpr):
            grouping.pop()

    promql_parser.walk(expr, pre, post)
    return found


def _problems(query: str, exported: dict[str, set[str]]) -> list[str]:
    """What is wrong with one dashboard query: series not exported, labels they do not carry."""
    split = _label_values(query)
    if split is not None:
        reads = [(name, used | {split[1]}) for name, used in _reads(_parse(split[0]))]
    else:
        reads = _reads(_parse(query))
    assert reads, query
    problems = []
    for name, used in reads:
        if name not in exported:
            problems.append(f"{query}: {name} is not exported")
        elif used - exported[name] - TARGET_LABELS:
            problems.append(f"{query}: {name} has no label {sorted(used - exported[name] - TARGET_LABELS)}")
    return problems


def _dashboard_model() -> dict:
    return json.loads(_dashboard.dashboard_path().read_text())


def test_committed_dashboard_is_the_generated_one() -> None:
    assert _dashboard.dashboard_path().read_text() == _dashboard.render(), (
        "run `python -m swarm_operator._dashboard`"
    )
    assert _dashboard.main(["--check"]) == 0


def test_dashboard_covers_what_the_issue_asks_for() -> None:
    model = _dashboard_model()
    reads = {name for q in _dashboard.queries(model) if not _label_values(q) for name, _ in _reads(_parse(q))}
    assert reads >= {
        "swarm_sandboxes",
        "swarm_ready_seconds_bucket",
        "swarm_e2b_calls_total",
        "swarm_agent_restarts_total",
        "swarm_orphans_killed_total",
        "swarm_sandbox_rate_usd_per_hour",
        "swarm_sandbox_estimated_usd_total",
    }
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))


def test_every_query_reads_only_exported_series_and_labels() -> None:
    exported = _exported()
    queries = _dashboard.queries(_dashboard_model())
    assert len(queries) >= 15
    assert [p for query in queries for p in _problems(query, exported)] == []


@pytest.mark.parametrize(
    "query",
    [
        'sum(swarm_no_such_series{job=~"$job"})',
        "sum by (namespace) (rate(swarm_e2b_calls_total[$__rate_interval]))",  # no namespace label
        "label_values(swarm_sandboxes, sandbox)",
    ],
)
def test_the_check_catches_a_wrong_query(query: str) -> None:
    assert _problems(query, _exported())


def test_invalid_promql_is_refused_by_the_parser() -> None:
    with pytest.raises(ValueError):
        _parse("sum by (namespace (swarm_sandboxes)")
