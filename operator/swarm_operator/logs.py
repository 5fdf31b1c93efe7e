"""Logging: one JSON object a line (or a human format), with secrets redacted at the source.

Redaction works on values, not on field names: every secret value the operator reads is registered with
the process-wide :data:`REDACTOR` the moment it is read (see ``secrets.py``), and the handler's filter
replaces any registered value in every record's message, arguments and extras before it is formatted.
That way even a careless ``logger.info("env=%s", env)`` or a third-party library's debug line cannot leak
a key that the operator holds.

Values are registered per *scope*: one scope per resource (its uid), cleared when the resource is
deleted, plus one operator-wide scope for the operator's own secrets (the default E2B key). A record
that names its resource (``extra={"k8s_ref": {..., "uid": ...}}``, as the lifecycle's and kopf's
per-object loggers do) is scrubbed of that resource's values and the operator-wide ones only, so one
tenant's Secret value can never blank words out of another tenant's lines. A record that names no
resource could be about any of them (a library's debug line, a traceback), so it is scrubbed of every
registered value: when the operator cannot tell, it errs towards hiding.

The JSON formatter is ours, not python-json-logger's (which kopf depends on) nor kopf's
``ObjectJsonFormatter``: the line's shape — ``time``/``level``/``logger``/``message``, then the
resource's namespace/name/uid lifted out of kopf's ``k8s_ref``, then other context — is what the
chart's docs and the tests read, and with either library it would take a subclass overriding the same
record-to-dict step these dozen lines are. The stdlib supplies everything else (handler, filter, levels).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

REDACTED = "[REDACTED]"
#: The scope of the operator's own secrets (the default E2B key): applied to every record. Resource
#: uids are never empty, so this cannot collide with a resource's scope.
OPERATOR_WIDE: Final = ""

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is context.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
# Context keys rendered first, in this order, when present.
_CONTEXT_KEYS = ("namespace", "name", "uid", "sandbox_id", "step", "duration")


class _Scope:
    """One scope's values and the pattern matching any of them, compiled once per change."""

    __slots__ = ("values", "pattern")

    def __init__(self, values: frozenset[str]) -> None:
        self.values = values
        # Longest first: at a given position the regex takes the first alternative that matches,
        # so a secret containing another secret is scrubbed whole.
        ordered = sorted(values, key=lambda v: (-len(v), v))
        self.pattern = re.compile("|".join(map(re.escape, ordered)))


class Redactor:
    """Thread-safe, per-scope sets of secret values to scrub from text.

    Values shorter than :attr:`MIN_LENGTH` (8) characters are not registered. Scrubbing a short value
    destroys every log line that happens to contain it ("Ready", "true", "1234", a namespace name)
    while protecting almost nothing: a credential worth hiding is long (API keys and tokens are 20+
    characters; 8 is the usual floor for a password), and a value of a few characters is guessable
    whether or not it is hidden. Those values are still never *written* anywhere by the operator; only
    this last-resort scrubbing of careless log lines skips them.
    """

    MIN_LENGTH: Final = 8

    def __init__(self) -> None:
        self._scopes: dict[str, _Scope] = {}
        self._lock = threading.Lock()

    def register(self, scope: str, values: Iterable[str]) -> None:
        """Add ``values`` to ``scope`` (a resource uid, or :data:`OPERATOR_WIDE`).

        A scope keeps every value registered until :meth:`clear`: an agent may still hold an old
        value after a rotation, so it stays hidden while the resource exists.
        """
        fresh = {v for v in values if isinstance(v, str) and len(v) >= self.MIN_LENGTH}
        current = self._scopes.get(scope)
        if not fresh or (current is not None and fresh <= current.values):
            return  # the steady state (every re-read of an unchanged Secret) compiles nothing
        with self._lock:
            current = self._scopes.get(scope)
            merged = fresh | (current.values if current is not None else frozenset())
            self._scopes = {**self._scopes, scope: _Scope(frozenset(merged))}

    def add(self, *values: str) -> None:
        """Register operator-wide values (the operator's own secrets)."""
        self.register(OPERATOR_WIDE, values)

    def clear(self, scope: str) -> None:
        """Forget a scope's values: its resource is gone. The operator-wide scope is never cleared."""
        if scope == OPERATOR_WIDE or scope not in self._scopes:
            return
        with self._lock:
            self._scopes = {k: v for k, v in self._scopes.items() if k != scope}

    def __len__(self) -> int:
        """How many values are registered, all scopes together (what memory they hold)."""
        return sum(len(s.values) for s in self._scopes.values())

    def scopes(self) -> frozenset[str]:
        """The scopes holding values (resource uids, and ``OPERATOR_WIDE`` once it has one)."""
        return frozenset(self._scopes)

    def redact(self, text: str, scope: str | None = None) -> str:
        """``text`` with every value of ``scope`` and of the operator-wide scope replaced.

        ``scope=None`` means "unknown resource": every scope's values apply.
        """
        scopes = self._scopes  # one consistent snapshot: writers replace the dict, never mutate it
        if not scopes or not text:
            return text
        if scope is None:
            chosen: Iterable[_Scope] = scopes.values()
        else:
            chosen = [s for s in (scopes.get(scope), scopes.get(OPERATOR_WIDE)) if s is not None]
        # Matches of every chosen scope are found in the original text and their spans merged, so
        # values of two scopes that overlap are both hidden whole (replacing scope by scope could
        # leave the tail of a longer secret behind a shorter one's marker).
        spans = sorted(m.span() for s in chosen for m in s.pattern.finditer(text))
        if not spans:
            return text
        out: list[str] = []
        position = 0  # text before this index is already in ``out``
        start, end = spans[0]
        for next_start, next_end in spans[1:]:
            if next_start < end:  # overlaps the span being built: grow it
                end = max(end, next_end)
                continue
            out += [text[position:start], REDACTED]
            position, (start, end) = end, (next_start, next_end)
        out += [text[position:start], REDACTED, text[end:]]
        return "".join(out)

    def redact_obj(self, obj: Any, scope: str | None = None) -> Any:
        """Redact strings inside plain containers (dicts, lists, tuples); other objects via str()."""
        if isinstance(obj, str):
            return self.redact(obj, scope)
        if isinstance(obj, dict):
            return {self.redact_obj(k, scope): self.redact_obj(v, scope) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.redact_obj(v, scope) for v in obj]
        if obj is None or isinstance(obj, (bool, int, float)):
            return obj
        return self.redact(str(obj), scope)


REDACTOR = Redactor()

#: Default bound of :func:`sandbox_text`: what a condition message or an Event shows of sandbox text.
SANDBOX_TEXT_LIMIT: Final = 1024
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


def sandbox_text(
    text: str,
    scope: str,
    *,
    limit: int = SANDBOX_TEXT_LIMIT,
    keep: str = "tail",
    redactor: Redactor | None = None,
) -> str:
    """Text that came out of a sandbox (a stderr tail, a step error, a gateway log line), made fit for
    status and Events: redacted with the resource's scope, stripped of terminal escapes and control
    characters, and at most ``limit`` characters.

    Redaction comes first, on the whole text: cutting first could leave the head of a secret that no
    longer matches its registered value. Then the text is cut, keeping its ``tail`` (the end of a
    stderr, where the error is) or its ``head``, with an ellipsis marking the cut. Escapes go because
    ``kubectl describe`` prints messages to a terminal; a sandbox must not be able to draw on it.
    """
    text = (redactor or REDACTOR).redact(text, scope)
    text = _ANSI.sub("", text)
    text = "".join(c if c in "\n\t" or unicodedata.category(c)[0] != "C" else " " for c in text)
    text = text.strip()
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    if keep == "head":
        return text[: limit - 1] + "…"
    return "…" + text[len(text) - limit + 1 :]


def record_scope(record: logging.LogRecord) -> str | None:
    """The resource a record is about (its uid), from the context the lifecycle and kopf attach."""
    ref = getattr(record, "k8s_ref", None)
    uid = ref.get("uid") if isinstance(ref, Mapping) else None
    if not uid:
        uid = getattr(record, "uid", None)
    return uid if isinstance(uid, str) and uid else None


class RedactingFilter(logging.Filter):
    """Renders the message once, redacted, so no formatter can re-insert a raw argument."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        scope = record_scope(record)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not kill logging
            message = f"{record.msg!r} {record.args!r}"
        record.msg = self._redactor.redact(message, scope)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redactor.redact(record.exc_text, scope)
        record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, self._redactor.redact_obj(value, scope))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's context."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
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
