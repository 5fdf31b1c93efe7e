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
        "created %s",
        "sbx-1",
        extra={
            "k8s_ref": {"namespace": "ns", "name": "n", "uid": "u-1"},
            "sandbox_id": "sbx-1",
            "step": "create",
            "duration": 0.25,
        },
    )
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


def _line(stream: io.StringIO) -> dict[str, object]:
    return json.loads(stream.getvalue().strip().splitlines()[-1])


def _ref(uid: str) -> dict[str, object]:
    return {"k8s_ref": {"namespace": "ns", "name": uid, "uid": uid}}


def test_a_common_word_secret_never_blanks_other_resources_lines(captured: io.StringIO) -> None:
    """Tenant A's Secret value being an everyday word hides it in A's lines only."""
    log = logging.getLogger("swarm_operator.test")
    logs.REDACTOR.register("uid-a", ["Ready", "Available"])  # "Ready" is under the minimum length
    try:
        log.info("phase Pending -> Ready (Available)", extra=_ref("uid-b"))
        assert _line(captured)["message"] == "phase Pending -> Ready (Available)"
        log.info("phase Pending -> Ready (Available)", extra=_ref("uid-a"))
        assert _line(captured)["message"] == f"phase Pending -> Ready ({logs.REDACTED})"
    finally:
        logs.REDACTOR.clear("uid-a")


def test_operator_wide_values_and_unscoped_lines(captured: io.StringIO) -> None:
    log = logging.getLogger("swarm_operator.test")
    default_key = "e2b_default_key_0123456789"
    logs.REDACTOR.add(default_key)  # the operator's own secret: hidden in every line
    logs.REDACTOR.register("uid-c", ["tenant-c-token-abcdef"])
    try:
        log.info("key %s", default_key, extra=_ref("uid-d"))
        assert default_key not in captured.getvalue()
        # A line naming no resource could be about any of them: every value is hidden.
        log.info("boom tenant-c-token-abcdef")
        assert _line(captured)["message"] == f"boom {logs.REDACTED}"
        log.info("boom tenant-c-token-abcdef", extra=_ref("uid-d"))
        assert _line(captured)["message"] == "boom tenant-c-token-abcdef"  # not uid-d's value
    finally:
        logs.REDACTOR.clear("uid-c")


def test_size_returns_to_baseline_after_clear() -> None:
    redactor = logs.Redactor()
    redactor.add("operator-wide-secret")
    baseline = len(redactor)
    for i in range(200):
        redactor.register(f"uid-{i}", [f"secret-value-{i:04d}", "shared-team-key-xyz"])
    assert len(redactor) == baseline + 400
    for i in range(200):
        redactor.clear(f"uid-{i}")
    assert len(redactor) == baseline and redactor.scopes() == {logs.OPERATOR_WIDE}
    redactor.clear(logs.OPERATOR_WIDE)  # the operator's own values are never dropped
    assert len(redactor) == baseline


def test_minimum_length_is_eight() -> None:
    redactor = logs.Redactor()
    redactor.register("u", ["1234567", "12345678"])
    assert len(redactor) == 1
    assert redactor.redact("1234567 12345678", "u") == f"1234567 {logs.REDACTED}"


def test_longest_value_wins_and_overlapping_values_are_hidden_whole() -> None:
    redactor = logs.Redactor()
    redactor.register("u", ["abcdefgh", "abcdefgh-ijklmnop"])
    redactor.register("v", ["mnop-qrstuvwx"])
    assert redactor.redact("x abcdefgh-ijklmnop y", "u") == f"x {logs.REDACTED} y"
    # Values of two scopes overlapping in one unscoped line: nothing of either is left.
    assert redactor.redact("abcdefgh-ijklmnop-qrstuvwx!", None) == f"{logs.REDACTED}!"
    assert redactor.redact("abcdefgh and mnop-qrstuvwx", None) == f"{logs.REDACTED} and {logs.REDACTED}"


def test_pattern_is_compiled_once_per_change() -> None:
    redactor = logs.Redactor()
    redactor.register("u", ["secret-value-one"])
    compiled = redactor._scopes["u"].pattern
    redactor.register("u", ["secret-value-one"])  # a re-read of an unchanged Secret
    assert redactor._scopes["u"].pattern is compiled
    redactor.register("u", ["secret-value-two"])  # a rotation: the old value stays hidden too
    assert redactor.redact("secret-value-one secret-value-two", "u") == f"{logs.REDACTED} {logs.REDACTED}"


def test_sandbox_text_is_redacted_then_bounded() -> None:
    redactor = logs.Redactor()
    secret = "sk-ant-0123456789abcdef"
    redactor.register("u", [secret])
    stderr = "x" * 5000 + f"\nfatal: auth failed for {secret}\x1b[31m red\x1b[0m\x07\n"
    text = logs.sandbox_text(stderr, "u", limit=100, redactor=redactor)
    assert len(text) == 100 and text.startswith("…")
    assert text.endswith(f"fatal: auth failed for {logs.REDACTED} red")
    assert secret[:8] not in text and "\x1b" not in text and "\x07" not in text
    # Redaction before the cut: a secret straddling the limit leaves no prefix behind.
    head = logs.sandbox_text(f"{secret} tail", "u", limit=8, keep="head", redactor=redactor)
    assert head == "[REDACT…" and "sk-ant" not in head
    # Another resource's scope does not apply; the default limit bounds status/Event text.
    assert secret in logs.sandbox_text(secret, "other", redactor=redactor)
    assert len(logs.sandbox_text("y" * 10_000, "u", redactor=logs.Redactor())) == logs.SANDBOX_TEXT_LIMIT
