from __future__ import annotations

import io
import json
import logging

import pytest

from swarm_operator import logs


@pytest.fixture()
def captured() -> io.StringIO:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    logs.configure("json", "DEBUG", stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_json_lines_carry_context(captured: io.StringIO) -> None:
    logging.getLogger("swarm_operator.test").info(
        "created %s", "sbx-1", extra={"k8s_ref": {"namespace": "ns", "name": "n", "uid": "u-1"}, "sandbox_id": "sbx-1",
                                      "step": "create", "duration": 0.25})
    line = json.loads(captured.getvalue().strip())
    assert line["message"] == "created sbx-1"
    assert line["namespace"] == "ns" and line["name"] == "n" and line["uid"] == "u-1"
    assert line["sandbox_id"] == "sbx-1"
    assert line["step"] == "create" and line["duration"] == 0.25
    assert line["level"] == "INFO"


def test_registered_secret_is_redacted_everywhere(captured: io.StringIO) -> None:
    canary = "e2b_canary_1234567890abcdef"
    logs.REDACTOR.add(canary)
    log = logging.getLogger("swarm_operator.test")
    log.info("key=%s", canary, extra={"env": {"KEY": canary}})
    try:
        raise RuntimeError(f"boom {canary}")
    except RuntimeError:
        log.exception("failed")
    out = captured.getvalue()
    assert canary not in out
    assert out.count(logs.REDACTED) >= 3


def test_short_values_are_not_registered() -> None:
    redactor = logs.Redactor()
    redactor.add("a", "abc")
    assert redactor.redact("a b c abc") == "a b c abc"


def test_text_format_is_readable() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.TextFormatter())
    record = logging.LogRecord("x", logging.INFO, "", 0, "hello", None, None)
    record.k8s_ref, record.step = {"namespace": "ns", "name": "n"}, "init"
    handler.emit(record)
    assert "[ns/n] hello" in stream.getvalue() and "step=init" in stream.getvalue()
