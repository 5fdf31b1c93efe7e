"""The sandbox backend: one seam (:class:`SandboxBackend`) and its E2B implementation.

Typical use::

    pool = BackendPool(observer=metrics.on_e2b_call)
    backend = pool.for_key(api_key)            # one backend per key, reused
    info = await backend.create("base", {"swarm-uid": uid}, envs=secret_envs, timeout_s=600)
    result = await backend.run(info.id, script, envs=secret_envs, timeout_s=120)

Every method raises only :class:`BackendError` subclasses, each with a stable ``reason`` (a
condition reason), an actionable ``message``, ``transient`` and ``retry_after_s``.

:class:`MockBackend` is the seam's in-memory implementation for tests (httpx's MockTransport is the
model): sandboxes in a dict, scripts answered by a handler, errors injected by method name.

The package is the only importer of the ``e2b`` SDK (an import-linter contract): besides the seam, it
holds the SDK calls of ``swarm-operator template`` (``_template.py``) and of the console's ``logs``,
``attach`` and ``pull``, which use the SDK's synchronous client at a terminal (``_terminal.py``).
"""

from ._classify import classify
from ._command import DEFAULT_OUTPUT_LIMIT_BYTES
from ._e2b import E2BBackend
from ._egress import ALL_TRAFFIC, egress_entry_refusal, network_request
from ._errors import (
    AuthenticationFailed,
    BackendError,
    BackendUnavailable,
    CommandTimeout,
    InvalidRequest,
    OutputLimitExceeded,
    QuotaExceeded,
    RateLimited,
    SandboxNotFound,
    TemplateAccessDenied,
    TemplateNotFound,
)
from ._key import key_fingerprint
from ._mock import MockBackend, ScriptHandler
from ._pool import BackendPool
from ._protocol import (
    BackendTimeouts,
    CallObserver,
    CommandResult,
    EgressPolicy,
    SandboxBackend,
    SandboxInfo,
    SandboxState,
    StateFilter,
)
from ._retry import NO_RETRY, RetryPolicy, backoff_delay, call_with_retry
from ._template import build_template, new_template, render_template
from ._terminal import (
    SdkErrors,
    connect_sync,
    download_file,
    pty_size,
    run_script,
    sandbox_paused,
    sdk_errors,
)

__all__ = [
    "ALL_TRAFFIC",
    "DEFAULT_OUTPUT_LIMIT_BYTES",
    "NO_RETRY",
    "AuthenticationFailed",
    "BackendError",
    "BackendPool",
    "BackendTimeouts",
    "BackendUnavailable",
    "CallObserver",
    "CommandResult",
    "CommandTimeout",
    "E2BBackend",
    "EgressPolicy",
    "InvalidRequest",
    "MockBackend",
    "OutputLimitExceeded",
    "QuotaExceeded",
    "RateLimited",
    "RetryPolicy",
    "SandboxBackend",
    "SandboxInfo",
    "SandboxNotFound",
    "SandboxState",
    "SdkErrors",
    "ScriptHandler",
    "StateFilter",
    "TemplateAccessDenied",
    "TemplateNotFound",
    "backoff_delay",
    "build_template",
    "call_with_retry",
    "classify",
    "connect_sync",
    "download_file",
    "sandbox_paused",
    "egress_entry_refusal",
    "key_fingerprint",
    "network_request",
    "new_template",
    "pty_size",
    "render_template",
    "run_script",
    "sdk_errors",
]
