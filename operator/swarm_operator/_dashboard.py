"""Generate the operator's Grafana dashboard with grafana-foundation-sdk (Grafana's own typed builders).

The chart ships the JSON (``charts/swarm-operator/dashboards/swarm-operator.json``) in a ConfigMap
that Grafana's dashboard sidecar picks up (``grafana.dashboard.enabled``). Building it here rather
than editing JSON by hand keeps the panels reviewable as code, and every query is a plain string a
unit test can parse to check that it only reads series :mod:`swarm_operator.metrics` exports.

Run ``python -m swarm_operator._dashboard`` to rewrite the file; ``--check`` exits non-zero when it is
stale (a unit test does the same). This is a development-time tool: grafana-foundation-sdk is a test
dependency, never imported by the running operator.

Every query selects the operator by ``job`` (a variable listing the scraped operators) and, for
series labelled with a SwarmSandbox's namespace, by ``namespace`` (the chart's ServiceMonitor
honours that label, see its template).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, dashboard, heatmap, prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions, StackingConfig, VizLegendOptions
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

__all__ = ["UID", "build", "dashboard_path", "queries", "render"]

UID = "swarm-operator"
_DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
_OP = 'job=~"$job"'
_NS = 'job=~"$job", namespace=~"$namespace"'


def _query(expr: str, legend: str = "__auto", ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(_DS)


def _legend() -> VizLegendOptions:
    return (
        VizLegendOptions()
        .show_legend(True)
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .calcs(["lastNotNull", "max"])
    )


def _series(
    title: str,
    description: str,
    unit: str,
    *targets: prometheus.Dataquery,
    stacked: bool = False,
    span: int = 12,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(_DS)
        .height(8)
        .span(span)
        .min(0)
        .legend(_legend())
        .fill_opacity(10 if not stacked else 40)
    )
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL))
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _stat(title: str, description: str, unit: str, expr: str, span: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(_DS)
        .height(4)
        .span(span)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(_query(expr, legend=""))
    )


def build() -> dashboard.Dashboard:
    """The dashboard as a builder (call ``.build()`` for the model): its variables, then one row
    per section with that section's panels, in order."""
    board = _board()
    for title, panels in (
        ("Spend (estimated from the operator's price table)", _spend_panels()),
        ("Swarms", _swarm_panels()),
        ("E2B", _e2b_panels()),
    ):
        board = board.with_row(dashboard.Row(title))
        for panel in panels:
            board = board.with_panel(panel)
    return board


_RATE = "[$__rate_interval]"


def _board() -> dashboard.Dashboard:
    return (
        dashboard.Dashboard("Swarm operator")
        .uid(UID)
        .description(
            "SwarmSandboxes by phase, time to Ready, E2B calls, restarts, orphans and "
            "estimated sandbox spend, from the swarm-operator's /metrics."
        )
        .tags(["swarm-operator", "e2b"])
        .editable()
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(_query_variable("job", "Operator", "label_values(swarm_build_info, job)"))
        .with_variable(
            _query_variable("namespace", "Namespace", 'label_values(swarm_sandboxes{job=~"$job"}, namespace)')
        )
    )


def _query_variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    """A multi-valued variable over a label's values, "All" matching any."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(_DS)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".+")
    )


def _spend_panels() -> list[Any]:
    return [
        _stat(
            "Spend rate",
            "What the running sandboxes cost per hour now.",
            "currencyUSD",
            f"sum(swarm_sandbox_rate_usd_per_hour{{{_NS}}})",
        ),
        _stat(
            "Spend in range",
            "Estimated USD accrued over the dashboard's time range.",
            "currencyUSD",
            f"sum(increase(swarm_sandbox_estimated_usd_total{{{_NS}}}[$__range]))",
        ),
        _stat(
            "Sandbox hours in range",
            "Running (billed) sandbox time over the time range; paused time is not counted.",
            "h",
            f"sum(increase(swarm_sandbox_seconds_total{{{_NS}}}[$__range])) / 3600",
        ),
        _stat(
            "Live sandboxes",
            "SwarmSandboxes in a phase with a running or paused sandbox.",
            "short",
            f'sum(swarm_sandboxes{{{_NS}, phase=~"Ready|Degraded|Initializing|Suspended"}})',
        ),
        _series(
            "Spend rate by namespace",
            "Estimated USD per hour of the running sandboxes, by namespace.",
            "currencyUSD",
            _query(f"sum by (namespace) (swarm_sandbox_rate_usd_per_hour{{{_NS}}})", "{{namespace}}"),
            stacked=True,
        ),
        bargauge.Panel()
        .title("Spend by namespace")
        .description("Estimated USD accrued over the dashboard's time range, by namespace.")
        .unit("currencyUSD")
        .datasource(_DS)
        .height(8)
        .span(12)
        .orientation(VizOrientation.HORIZONTAL)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(
            _query(
                f"sum by (namespace) (increase(swarm_sandbox_estimated_usd_total{{{_NS}}}[$__range]))",
                "{{namespace}}",
            ).instant()
        ),
    ]


def _swarm_panels() -> list[Any]:
    ready = f"swarm_ready_seconds_bucket{{{_OP}}}{_RATE}"
    return [
        _series(
            "Swarms by phase",
            "SwarmSandbox resources in each phase.",
            "short",
            _query(f"sum by (phase) (swarm_sandboxes{{{_NS}}})", "{{phase}}"),
            stacked=True,
        ),
        heatmap.Panel()
        .title("Apply → Ready latency")
        .description("Time from a spec generation being applied to the resource being Ready with it.")
        .datasource(_DS)
        .height(8)
        .span(12)
        .calculate(False)
        .with_target(_query(f"sum by (le) (increase({ready}))", "{{le}}").format(PromQueryFormat.HEATMAP)),
        _series(
            "Apply → Ready quantiles",
            "p50 and p95 of the time from apply to Ready.",
            "s",
            _query(f"histogram_quantile(0.5, sum by (le) (rate({ready})))", "p50"),
            _query(f"histogram_quantile(0.95, sum by (le) (rate({ready})))", "p95", ref="B"),
        ),
        _series(
            "Agent restarts and orphans killed",
            "Dead agents restarted by the health check; sandboxes killed because their resource was gone.",
            "short",
            _query(f"sum(increase(swarm_agent_restarts_total{{{_OP}}}{_RATE}))", "agent restarts"),
            _query(f"sum(increase(swarm_orphans_killed_total{{{_OP}}}{_RATE}))", "orphans killed", ref="B"),
        ),
    ]


def _e2b_panels() -> list[Any]:
    return [
        _series(
            "E2B calls by operation and outcome",
            "Calls to E2B per second (every attempt, every list page).",
            "reqps",
            _query(
                f"sum by (operation, outcome) (rate(swarm_e2b_calls_total{{{_OP}}}{_RATE}))",
                "{{operation}} {{outcome}}",
            ),
            stacked=True,
        ),
        _series(
            "E2B errors by operation and outcome",
            "Calls to E2B that did not succeed, per second.",
            "reqps",
            _query(
                f'sum by (operation, outcome) (rate(swarm_e2b_calls_total{{{_OP}, outcome!="ok"}}{_RATE}))',
                "{{operation}} {{outcome}}",
            ),
            stacked=True,
        ),
        _series(
            "E2B call latency p95",
            "95th percentile of one call's duration, by operation.",
            "s",
            _query(
                "histogram_quantile(0.95, sum by (operation, le) "
                f"(rate(swarm_e2b_call_seconds_bucket{{{_OP}}}{_RATE})))",
                "{{operation}}",
            ),
            span=24,
        ),
    ]


def render() -> str:
    """The dashboard JSON as committed to the chart."""
    model = build().build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number  # unique panel ids: Grafana links, edits and shares panels by id
    return JSONEncoder(sort_keys=True, indent=2).encode(model) + "\n"


def queries(model: dict[str, Any]) -> list[str]:
    """Every PromQL expression in a dashboard's JSON: panel targets and query variables."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            if node.get("type") == "query" and isinstance(node.get("query"), str):
                found.append(node["query"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(model)
    return found


def dashboard_path() -> Path:
    return (
        Path(__file__).resolve().parents[2]
        / "charts"
        / "swarm-operator"
        / "dashboards"
        / "swarm-operator.json"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarm_operator._dashboard", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is not up to date")
    args = parser.parse_args(argv)
    text = render()
    json.loads(text)  # never write something Grafana cannot read
    path = dashboard_path()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"stale: {path}", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
