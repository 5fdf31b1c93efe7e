"""Sharding by label: the hash that assigns a shard, the selectors each shard watches with, and the
labeller's decisions (label, leave alone, report) against a fake Kubernetes side."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import kopf
import pytest

from swarm_operator import handlers
from swarm_operator.config import Settings, SettingsError
from swarm_operator.lifecycle.shard import ShardPlan, assign, assign_forever, shard_of
from swarm_operator.names import GROUP, PLURAL, SHARD_LABEL, VERSION
from swarm_testbed.kube._selectors import parse_label_selector


def _body(uid: str, labels: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    metadata = {"namespace": "default", "name": "s", "uid": uid, "resourceVersion": "7", **meta}
    if labels is not None:
        metadata["labels"] = labels
    return {"metadata": metadata}


class FakeLabeller:
    def __init__(
        self, bodies: list[Mapping[str, Any]] | None = None, *, accept: bool | Exception = True
    ) -> None:
        self.bodies = list(bodies or [])
        self.accept = accept
        self.labelled: list[tuple[str, str, str]] = []
        self.warnings: list[tuple[str, str, str]] = []

    async def unassigned(self, selector: str) -> AsyncIterator[Mapping[str, Any]]:
        for body in self.bodies:
            yield body

    async def label(self, body: Mapping[str, Any], key: str, value: str) -> bool:
        if isinstance(self.accept, Exception):
            raise self.accept
        self.labelled.append((body["metadata"]["uid"], key, value))
        return bool(self.accept)

    async def warn(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        self.warnings.append((body["metadata"]["uid"], reason, message))


def test_the_shard_is_sha256_of_the_uid_and_the_same_in_every_process() -> None:
    uid = "3f0c2a4e-2b7c-4d55-9a62-0d9d7b3f6a10"
    expected = int(hashlib.sha256(uid.encode()).hexdigest()[:16], 16)
    assert [shard_of(uid, n) for n in (2, 3, 7)] == [expected % 2, expected % 3, expected % 7]
    # Another interpreter with another hash seed computes the same (Python's hash() would not).
    code = f"from swarm_operator.lifecycle.shard import shard_of; print(shard_of({uid!r}, 7))"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": seed},
            check=True,
        )
        assert int(out.stdout) == expected % 7


def test_uids_spread_evenly_over_the_shards() -> None:
    counts = Counter(shard_of(str(uuid.uuid4()), 3) for _ in range(3000))
    assert set(counts) == {0, 1, 2} and min(counts.values()) > 850


@pytest.mark.parametrize(("text", "plan"), [("", None), ("0/3", ShardPlan(0, 3)), ("2/3", ShardPlan(2, 3))])
def test_plan_parses_index_of_shards(text: str, plan: ShardPlan | None) -> None:
    assert ShardPlan.parse(text) == plan
    assert Settings.from_env({"SWARM_SHARD": text}).shard == text


@pytest.mark.parametrize("text", ["3/3", "1/1", "0/0", "x", "1", "-1/3", "1/3/4"])
def test_a_shard_setting_out_of_range_fails_at_start_naming_the_variable(text: str) -> None:
    with pytest.raises(SettingsError, match="SWARM_SHARD"):
        Settings.from_env({"SWARM_SHARD": text})
    with pytest.raises(ValueError):
        ShardPlan.parse(text)


def test_selectors_split_every_resource_between_one_shard_and_the_labeller() -> None:
    """Checked with the Kubernetes emulator's selector semantics (``notin`` matches a missing label)."""
    plans = [ShardPlan(i, 3) for i in range(3)]
    for labels, served_by, unassigned in [
        ({}, [], True),
        ({SHARD_LABEL: "0"}, [0], False),
        ({SHARD_LABEL: "2"}, [2], False),
        ({SHARD_LABEL: "3"}, [], True),
        ({SHARD_LABEL: "a"}, [], True),
        ({SHARD_LABEL: "01"}, [], True),
        ({"team": "x"}, [], True),
    ]:
        obj = {"metadata": {"labels": labels}}
        assert [p.index for p in plans if parse_label_selector(p.own_selector)(obj)] == served_by, labels
        assert all(parse_label_selector(p.unassigned_selector)(obj) == unassigned for p in plans), labels


def test_an_unlabelled_resource_gets_its_hash_shard_from_any_shard() -> None:
    uid = str(uuid.uuid4())
    owner = shard_of(uid, 3)
    for index in range(3):  # whichever shard sees it first writes the same value
        fake = FakeLabeller()
        assert asyncio.run(assign(ShardPlan(index, 3), _body(uid), fake)) == str(owner)
        assert fake.labelled == [(uid, SHARD_LABEL, str(owner))] and not fake.warnings


def test_a_lost_race_or_a_failed_write_is_left_to_the_next_listing() -> None:
    uid = str(uuid.uuid4())
    conflicted = FakeLabeller(accept=False)  # 409: changed since (another shard labelled it)
    assert asyncio.run(assign(ShardPlan(0, 3), _body(uid), conflicted)) is None
    broken = FakeLabeller(accept=RuntimeError("API server away"))
    assert asyncio.run(assign(ShardPlan(0, 3), _body(uid), broken)) is None


def test_a_resource_being_deleted_is_not_labelled() -> None:
    fake = FakeLabeller()
    body = _body(str(uuid.uuid4()), deletionTimestamp="2026-01-01T00:00:00Z")
    assert asyncio.run(assign(ShardPlan(0, 3), body, fake)) is None
    assert not fake.labelled


def test_a_label_naming_no_shard_is_reported_once_by_the_hash_owner_and_never_rewritten() -> None:
    uid = str(uuid.uuid4())
    owner = shard_of(uid, 3)
    bodies = [_body(uid, {SHARD_LABEL: "7"})] * 3  # three watch events for the same resource
    fakes = {index: FakeLabeller(bodies) for index in range(3)}
    for index, fake in fakes.items():
        asyncio.run(assign_forever(ShardPlan(index, 3), fake))
        assert not fake.labelled
    assert [len(f.warnings) for i, f in sorted(fakes.items())] == [int(i == owner) for i in range(3)]
    ((_, reason, message),) = fakes[owner].warnings
    assert reason == "ShardLabelInvalid" and f"{SHARD_LABEL}=7" in message and "0..2" in message


def test_kopf_watches_only_the_shards_own_label_with_any_user_selector() -> None:
    settings, memo = kopf.OperatorSettings(), kopf.Memo()
    memo.selector = "team=a"
    handlers._watch_scope(settings, memo, ShardPlan(1, 3))
    selectors = settings.watching.label_selectors
    assert set(selectors.collect(kopf.Resource(GROUP, VERSION, PLURAL))) == {f"team=a,{SHARD_LABEL}=1"}

    unsharded, memo = kopf.OperatorSettings(), kopf.Memo()
    handlers._watch_scope(unsharded, memo, None)
    assert not list(unsharded.watching.label_selectors.collect(kopf.Resource(GROUP, VERSION, PLURAL)))


def test_the_labeller_names_a_namespace_pattern_it_cannot_watch(caplog: pytest.LogCaptureFixture) -> None:
    import kubernetes

    from swarm_operator.cluster import KubeShardLabeller

    labeller = KubeShardLabeller(kubernetes.client.ApiClient(), namespaces=["team-*"], timeout_s=1)

    async def first() -> None:
        await asyncio.wait_for(anext(labeller.unassigned(ShardPlan(0, 2).unassigned_selector)), 0.5)

    with caplog.at_level("ERROR"), pytest.raises(TimeoutError):
        asyncio.run(first())  # nothing to list, and no thread hammering an invalid namespace name
    assert "'team-*' not watched" in caplog.text
    assert not [t for t in threading.enumerate() if t.name.startswith("shard-watch")]
