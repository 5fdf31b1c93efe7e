"""Logging: one JSON object a line (or a human format), with secrets redacted at the source.

Redaction works on values, not on field names: every secret value the operator reads is registered with
the process-wide :data:`REDACTOR` the moment it is read (see ``secrets.py``), and the handler's filter
replaces any registered value in every record's message, arguments and extras before it is formatted.
That way even a careless ``logger.info("env=%s", env)`` or a third-party library's debug line cannot leak
a key that the operator holds.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

REDACTED = "[REDACTED]"

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is context.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# Context keys rendered first, in this order, when present.
_CONTEXT_KEYS = ("namespace", "name", "uid", "sandbox_id", "step", "duration")


class Redactor:
    """A thread-safe set of secret values to scrub from any text.

    Values shorter than 4 characters are not registered: replacing every "a" or "1" in the logs would
    destroy them while protecting nothing a person could use.
    """

    _MIN_LENGTH = 4

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, *values: str) -> None:
        fresh = {v for v in values if isinstance(v, str) and len(v) >= self._MIN_LENGTH}
        if fresh - self._values:
            with self._lock:
                self._values = self._values | fresh

    def redact(self, text: str) -> str:
        values = self._values
        if not values:
            return text
        # Longest first, so a secret containing another secret is scrubbed whole.
        for value in sorted(values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def redact_obj(self, obj: Any) -> Any:
        """Redact strings inside plain containers (dicts, lists, tuples); other objects via str()."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {self.redact_obj(k): self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.redact_obj(v) for v in obj]
        if obj is None or isinstance(obj, (bool, int, float)):
            return obj
        return self.redact(str(obj))


REDACTOR = Redactor()


class RedactingFilter(logging.Filter):
    """Renders the message once, redacted, so no formatter can re-insert a raw argument."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not kill logging
            message = f"{record.msg!r} {record.args!r}"
        record.msg = self._redactor.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redactor.redact(record.exc_text)
        record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, self._redactor.redact_obj(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's context."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(_context(record))
        if record.exc_text:
            payload["exception"] = record.exc_text
        return json.dumps(payload, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A terminal-friendly line: time, level, object reference, message, then key=value context."""

    def format(self, record: logging.LogRecord) -> str:
        context = _context(record)
        ref = ""
        if "namespace" in context and "name" in context:
            ref = f"[{context.pop('namespace')}/{context.pop('name')}] "
        extras = " ".join(f"{k}={v}" for k, v in context.items())
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{when} {record.levelname:<7} {record.name}: {ref}{record.getMessage()}"
        if extras:
            line = f"{line}  {extras}"
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        return line


def _context(record: logging.LogRecord) -> dict[str, Any]:
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}
    # kopf's per-object loggers carry the object reference as ``k8s_ref``.
    ref = extras.pop("k8s_ref", None)
    if isinstance(ref, dict):
        extras.setdefault("namespace", ref.get("namespace"))
        extras.setdefault("name", ref.get("name"))
        extras.setdefault("uid", ref.get("uid"))
    extras.pop("settings", None)  # kopf attaches its settings object to some records
    ordered = {k: extras.pop(k) for k in _CONTEXT_KEYS if extras.get(k) is not None}
    ordered.update({k: v for k, v in extras.items() if v is not None})
    return ordered


def configure(log_format: str = "json", level: str = "INFO", stream: Any = None) -> None:
    """Install one redacting handler on the root logger, replacing any handlers set before."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The kubernetes client logs whole request bodies (Secrets included) at DEBUG: never let it.
    for noisy in _QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.INFO))


_QUIET_LOGGERS: Iterable[str] = ("kubernetes", "urllib3", "httpx", "httpcore", "aiohttp.access")
