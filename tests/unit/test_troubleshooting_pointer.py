"""A problem's message says where it is explained: Ready=False (and the condition behind it) and
every Warning Event end with a pointer to the reason's section of docs/troubleshooting.md, within
the message bounds; progress and Normal Events carry none."""

from __future__ import annotations

import re

import pytest
from tests.unit.test_docs import DOCS
from tests.unit.test_lifecycle import REF, SPEC, FakeBackend, Recorder, _conditions, _runtime, _spec, _status

from swarm_operator import lifecycle
from swarm_operator.backend import AuthenticationFailed
from swarm_operator.conditions import ConditionType, Reason, troubleshooting_pointer
from swarm_operator.lifecycle.runtime import RetryLater
from swarm_operator.lifecycle.status import CONDITION_MESSAGE_LIMIT, EVENT_MESSAGE_LIMIT, StatusBook

POINTER = re.compile(r"See docs/troubleshooting\.md#([a-z]+)\.$")


def _anchors() -> set[str]:
    """GitHub's anchors for the headings of docs/troubleshooting.md (lower-cased, spaces to dashes)."""
    text = (DOCS / "troubleshooting.md").read_text()
    return {h.strip().lower().replace(" ", "-") for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_every_reason_points_at_a_section_that_exists() -> None:
    anchors = _anchors()
    for reason in Reason:
        match = POINTER.search(troubleshooting_pointer(reason))
        assert match and match.group(1) in anchors, reason
    assert troubleshooting_pointer("NotAReason") == ""


async def test_a_failed_resource_says_where_its_reason_is_explained() -> None:
    backend = FakeBackend(list_error=AuthenticationFailed("the API key was rejected"))
    recorder = Recorder()
    with pytest.raises(RetryLater):
        await lifecycle.reconcile(REF, _spec(SPEC), _status(None), _runtime(backend, recorder))
    status = recorder.status()
    ready = _conditions(status)["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "AuthenticationFailed"
    assert ready["message"].endswith(" See docs/troubleshooting.md#authenticationfailed.")
    assert status["message"] == ready["message"]
    [warning] = [e for e in recorder.events if e[0] == "Warning"]
    assert warning[2].endswith(" See docs/troubleshooting.md#authenticationfailed.")
    assert warning[2].count("docs/troubleshooting.md") == 1


def test_the_pointer_survives_the_cut_and_is_never_doubled() -> None:
    recorder = Recorder()
    book = StatusBook(REF, _status(None), _runtime(FakeBackend(), recorder))
    pointer = troubleshooting_pointer(Reason.INVALID_SPEC)
    book.set(ConditionType.SYNCED, "False", Reason.INVALID_SPEC, "x" * (2 * CONDITION_MESSAGE_LIMIT))
    [synced] = book.status.conditions
    assert len(synced.message) <= CONDITION_MESSAGE_LIMIT and synced.message.endswith("… " + pointer)
    book.set(ConditionType.SYNCED, "False", Reason.INVALID_SPEC, synced.message)  # read back, set again
    assert book.status.conditions[0].message == synced.message
    book.event("Warning", Reason.INVALID_SPEC, "y" * 5000)
    book.event("Normal", Reason.CREATED, "z" * 5000)
    (_, _, warning), (_, _, normal) = recorder.events
    assert len(warning) <= EVENT_MESSAGE_LIMIT and warning.endswith("… " + pointer)
    assert len(normal) <= EVENT_MESSAGE_LIMIT and "troubleshooting" not in normal


def test_progress_is_not_pointed() -> None:
    book = StatusBook(REF, _status(None), _runtime(FakeBackend(), Recorder()))
    book.set(ConditionType.SANDBOX_CREATED, "False", Reason.CREATING, "creating the sandbox")
    assert book.status.conditions[0].message == "creating the sandbox"
