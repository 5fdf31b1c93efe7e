"""Conditions: transition times, the overall Ready, and the phase table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm_operator.conditions import (
    TERMINAL_REASONS,
    ConditionType,
    Reason,
    derive_phase,
    find,
    ready_condition,
    refresh_ready,
    set_condition,
)
from swarm_operator.model import Condition, Phase, SwarmSandboxStatus

T0 = datetime(2026, 11, 5, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=30)
T2 = T0 + timedelta(seconds=90)

C = ConditionType
R = Reason


def test_first_set_stamps_the_time_and_generation() -> None:
    conds = set_condition(
        [], C.SANDBOX_CREATED, "False", R.CREATING, "creating", observed_generation=1, now=T0
    )
    (cond,) = conds
    assert (cond.type, cond.status, cond.reason, cond.message) == (
        "SandboxCreated",
        "False",
        "Creating",
        "creating",
    )
    assert cond.last_transition_time == T0 and cond.observed_generation == 1


def test_same_status_keeps_the_transition_time_but_updates_the_rest() -> None:
    conds = set_condition([], C.AGENTS_READY, "False", R.INITIALIZING, "0/4", observed_generation=1, now=T0)
    conds = set_condition(
        conds, C.AGENTS_READY, "False", R.AGENTS_DEGRADED, "3/4", observed_generation=2, now=T1
    )
    (cond,) = conds
    assert cond.last_transition_time == T0
    assert (cond.reason, cond.message, cond.observed_generation) == ("AgentsDegraded", "3/4", 2)


def test_status_change_moves_the_transition_time() -> None:
    conds = set_condition([], C.AGENTS_READY, "False", R.INITIALIZING, observed_generation=1, now=T0)
    conds = set_condition(conds, C.AGENTS_READY, "True", R.AVAILABLE, observed_generation=1, now=T1)
    assert conds[0].last_transition_time == T1
    conds = set_condition(
        conds, C.AGENTS_READY, "Unknown", R.BACKEND_UNAVAILABLE, observed_generation=1, now=T2
    )
    assert conds[0].last_transition_time == T2


def test_other_conditions_are_untouched_and_order_is_kept() -> None:
    conds = set_condition([], C.SANDBOX_CREATED, "True", R.AVAILABLE, observed_generation=1, now=T0)
    conds = set_condition(conds, C.AGENTS_READY, "False", R.INITIALIZING, observed_generation=1, now=T0)
    before = list(conds)
    after = set_condition(
        conds, C.SANDBOX_CREATED, "True", R.AVAILABLE, "again", observed_generation=2, now=T2
    )
    assert [c.type for c in after] == ["SandboxCreated", "AgentsReady"]
    assert after[1] is before[1]
    assert conds == before, "the input list is not mutated"


def test_default_time_is_now_in_utc() -> None:
    (cond,) = set_condition([], C.SYNCED, "True", R.RECONCILED, observed_generation=None)
    assert cond.last_transition_time.tzinfo is not None
    assert abs(datetime.now(UTC) - cond.last_transition_time) < timedelta(seconds=5)


def test_conditions_survive_a_round_trip_through_status() -> None:
    conds = set_condition([], C.SYNCED, "False", R.RATE_LIMITED, "429", observed_generation=4, now=T0)
    patch = SwarmSandboxStatus(conditions=conds).to_patch()
    assert patch["conditions"] == [
        {
            "type": "Synced",
            "status": "False",
            "reason": "RateLimited",
            "message": "429",
            "lastTransitionTime": "2026-11-05T12:00:00Z",
            "observedGeneration": 4,
        }
    ]
    again = SwarmSandboxStatus.model_validate(patch).conditions
    assert (
        set_condition(again, C.SYNCED, "False", R.RATE_LIMITED, observed_generation=5, now=T2)[
            0
        ].last_transition_time
        == T0
    )


def _conds(**spec: tuple[str, str]) -> list[Condition]:
    conds: list[Condition] = []
    for type_, (status, reason) in spec.items():
        conds = set_condition(
            conds, type_, status, reason, f"{type_} {reason}", observed_generation=1, now=T0
        )
    return conds


# (conditions, deleting) -> phase: the table in conditions.py's docstring, row by row.
PHASES = [
    ({}, False, Phase.PENDING),
    ({}, True, Phase.TERMINATING),
    (
        dict(
            Ready=("True", "Available"),
            SandboxCreated=("True", "Available"),
            AgentsReady=("True", "Available"),
        ),
        True,
        Phase.TERMINATING,
    ),
    (dict(Synced=("False", "InvalidSpec")), False, Phase.FAILED),
    (dict(Synced=("False", "AuthenticationFailed")), False, Phase.FAILED),
    (dict(Synced=("False", "TemplateNotFound")), False, Phase.FAILED),
    (dict(SandboxCreated=("True", "Available"), Synced=("False", "InitFailed")), False, Phase.FAILED),
    (
        dict(SandboxCreated=("False", "SandboxExpired"), Synced=("False", "SandboxExpired")),
        False,
        Phase.FAILED,
    ),
    (dict(Synced=("False", "InvalidSpec"), Suspended=("True", "Suspended")), False, Phase.FAILED),
    (dict(SandboxCreated=("True", "Available"), Suspended=("True", "Suspended")), False, Phase.SUSPENDED),
    (dict(SandboxCreated=("True", "Available"), AgentsReady=("True", "Available")), False, Phase.READY),
    (
        dict(
            SandboxCreated=("True", "Available"),
            AgentsReady=("True", "Available"),
            Synced=("False", "RateLimited"),
        ),
        False,
        Phase.READY,
    ),
    (dict(SandboxCreated=("True", "Available")), False, Phase.INITIALIZING),
    (
        dict(SandboxCreated=("True", "Available"), AgentsReady=("False", "Initializing")),
        False,
        Phase.INITIALIZING,
    ),
    (
        dict(SandboxCreated=("True", "Available"), AgentsReady=("False", "AgentsDegraded")),
        False,
        Phase.DEGRADED,
    ),
    (
        dict(SandboxCreated=("True", "Available"), AgentsReady=("Unknown", "BackendUnavailable")),
        False,
        Phase.DEGRADED,
    ),
    (dict(SandboxCreated=("False", "Creating")), False, Phase.CREATING),
    (dict(SandboxCreated=("False", "Creating"), Synced=("False", "QuotaExceeded")), False, Phase.CREATING),
    (dict(Synced=("False", "SecretNotFound")), False, Phase.PENDING),
    (dict(Synced=("False", "RateLimited")), False, Phase.PENDING),
    (dict(SandboxCreated=("False", "SandboxNotFound")), False, Phase.PENDING),
]


@pytest.mark.parametrize(("spec", "deleting", "phase"), PHASES)
def test_phase_table(spec: dict[str, tuple[str, str]], deleting: bool, phase: Phase) -> None:
    assert derive_phase(_conds(**spec), deleting=deleting) is phase


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, ("False", "Creating")),
        (dict(Synced=("False", "SecretNotFound")), ("False", "SecretNotFound")),
        (
            dict(SandboxCreated=("False", "Creating"), Synced=("False", "QuotaExceeded")),
            ("False", "QuotaExceeded"),
        ),
        (dict(SandboxCreated=("False", "Creating")), ("False", "Creating")),
        (dict(SandboxCreated=("True", "Available")), ("False", "Initializing")),
        (
            dict(SandboxCreated=("True", "Available"), AgentsReady=("False", "AgentsDegraded")),
            ("False", "AgentsDegraded"),
        ),
        (
            dict(SandboxCreated=("True", "Available"), AgentsReady=("True", "Available")),
            ("True", "Available"),
        ),
        (
            dict(
                SandboxCreated=("True", "Available"),
                AgentsReady=("True", "Available"),
                Synced=("False", "BackendUnavailable"),
            ),
            ("True", "Available"),
        ),
        (
            dict(
                SandboxCreated=("True", "Available"),
                AgentsReady=("True", "Available"),
                Synced=("False", "InvalidSpec"),
            ),
            ("False", "InvalidSpec"),
        ),
        (
            dict(
                SandboxCreated=("True", "Available"),
                AgentsReady=("True", "Available"),
                Suspended=("True", "Suspended"),
            ),
            ("False", "Suspended"),
        ),
    ],
)
def test_ready_condition(spec: dict[str, tuple[str, str]], expected: tuple[str, str]) -> None:
    status, reason, message = ready_condition(_conds(**spec))
    assert (status, str(reason)) == expected
    assert message


def test_ready_carries_the_blocking_message() -> None:
    conds = set_condition(
        [],
        C.SYNCED,
        "False",
        R.INVALID_SPEC,
        "spec.coordinator.install: 'x' is not pinned",
        observed_generation=2,
        now=T0,
    )
    ready = find(refresh_ready(conds, observed_generation=2, now=T0), C.READY)
    assert ready is not None
    assert (ready.status, ready.reason, ready.observed_generation) == ("False", "InvalidSpec", 2)
    assert "coordinator.install" in ready.message


def test_refresh_ready_keeps_its_transition_time_while_not_ready() -> None:
    conds = refresh_ready(_conds(SandboxCreated=("False", "Creating")), observed_generation=1, now=T0)
    conds = set_condition(conds, C.SANDBOX_CREATED, "True", R.AVAILABLE, observed_generation=1, now=T1)
    conds = refresh_ready(conds, observed_generation=1, now=T1)
    ready = find(conds, C.READY)
    assert ready is not None and ready.reason == "Initializing" and ready.last_transition_time == T0
    conds = set_condition(conds, C.AGENTS_READY, "True", R.AVAILABLE, observed_generation=1, now=T2)
    ready = find(refresh_ready(conds, observed_generation=1, now=T2), C.READY)
    assert ready is not None and ready.status == "True" and ready.last_transition_time == T2


def test_terminal_reasons_are_reasons() -> None:
    assert TERMINAL_REASONS <= set(Reason)
    assert {str(r) for r in TERMINAL_REASONS} == {
        "InvalidSpec",
        "AuthenticationFailed",
        "TemplateNotFound",
        "TemplateAccessDenied",
        "InitFailed",
        "SandboxExpired",
        "SandboxQuarantined",
        "DefaultKeyNotAllowed",
        "TemplateNotAllowed",
        "OrphanNotAllowed",
        "NamespaceNotAllowed",
        "BudgetExceeded",
    }


def test_reasons_fit_the_condition_reason_pattern() -> None:
    for reason in Reason:
        Condition(type="Ready", status="False", reason=reason.value, last_transition_time=T0)
    for type_ in ConditionType:
        Condition(type=type_.value, status="True", reason="Available", last_transition_time=T0)


_component = st.tuples(
    st.sampled_from(["True", "False", "Unknown"]), st.sampled_from([r.value for r in Reason])
)


@settings(max_examples=300, deadline=None)
@given(
    parts=st.dictionaries(st.sampled_from([t.value for t in ConditionType if t is not C.READY]), _component),
    deleting=st.booleans(),
)
def test_phase_is_total_and_consistent_with_ready(parts: dict[str, tuple[str, str]], deleting: bool) -> None:
    conds = refresh_ready(_conds(**parts), observed_generation=1, now=T0)
    phase = derive_phase(conds, deleting=deleting)
    ready = find(conds, C.READY)
    assert ready is not None
    assert (phase is Phase.TERMINATING) == deleting
    if not deleting:
        assert (phase is Phase.READY) == (ready.status == "True")
        assert (phase is Phase.FAILED) == (ready.status == "False" and ready.reason in TERMINAL_REASONS)
        # Storing Ready or not makes no difference: phase is computed from the components.
        assert derive_phase([c for c in conds if c.type != "Ready"]) is phase


def test_every_reason_the_layers_below_raise_is_a_reason() -> None:
    """The backend's and the Secret reader's failure reasons reach Synced (and Ready) verbatim, so
    each one must be a :class:`Reason` too: one list of every reason the operator can set."""
    from swarm_operator import backend, secrets

    def subclasses(cls: type) -> list[type]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    raised = {c.reason for c in subclasses(backend.BackendError)} | {
        c.reason for c in subclasses(secrets.SecretNotFound)
    }
    assert len(raised) >= 8
    assert raised <= {r.value for r in Reason}
