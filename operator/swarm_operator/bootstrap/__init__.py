"""The in-sandbox scripts: one idempotent setup (also scale and self-heal), a probe, a teardown,
and the delivery of spec.task.

Each script is rendered from a :class:`BootstrapPlan`, run in one ``commands.run`` call, and answers
with one JSON report that the matching parser turns into a typed model::

    script = render_setup(plan)
    result = await backend.run(sandbox_id, script, stdin=secret_input(secret_values), timeout_s=...)
    report = parse_report(result.stdout)
"""

from swarm_operator.bootstrap._agentname import CLAUDE_CODE_COMMAND, imitated, is_claude_code, program
from swarm_operator.bootstrap._plan import (
    AGENT_CLI_PACKAGES,
    CLAUDE_CODE_PACKAGE,
    COORDINATOR_PYTHON,
    GIT_PASSWORD_ENV,
    MCP_GATEWAY_PORT,
    NPM_INTEGRITY,
    NPM_NATIVE,
    NPM_PINNED,
    SECRET_ENV_PREFIX,
    UV_PIN,
    BootstrapPlan,
    coordinator_lock,
    secret_env_name,
    session_name,
    socket_name,
)
from swarm_operator.bootstrap._push import PUSH_AUTHOR, PUSH_EMAIL, PushReport, parse_push, render_push
from swarm_operator.bootstrap._render import (
    MAX_SCRIPT_BYTES,
    render_probe,
    render_setup,
    render_task,
    render_teardown,
    secret_input,
    task_input,
)
from swarm_operator.bootstrap._report import (
    BootstrapReport,
    BootstrapReportError,
    CoordinatorReport,
    HealthReport,
    McpReport,
    PaneReport,
    ProgressReport,
    RegistryReport,
    StepError,
    TaskPaneReport,
    TaskReport,
    TeardownReport,
    WorkspaceReport,
    parse_health,
    parse_report,
    parse_task,
    parse_teardown,
)

__all__ = [
    "AGENT_CLI_PACKAGES",
    "CLAUDE_CODE_COMMAND",
    "CLAUDE_CODE_PACKAGE",
    "COORDINATOR_PYTHON",
    "MAX_SCRIPT_BYTES",
    "NPM_INTEGRITY",
    "NPM_NATIVE",
    "UV_PIN",
    "NPM_PINNED",
    "BootstrapPlan",
    "BootstrapReport",
    "BootstrapReportError",
    "CoordinatorReport",
    "GIT_PASSWORD_ENV",
    "SECRET_ENV_PREFIX",
    "MCP_GATEWAY_PORT",
    "McpReport",
    "WorkspaceReport",
    "HealthReport",
    "PaneReport",
    "ProgressReport",
    "PUSH_AUTHOR",
    "PUSH_EMAIL",
    "PushReport",
    "parse_push",
    "render_push",
    "RegistryReport",
    "StepError",
    "TaskPaneReport",
    "TaskReport",
    "TeardownReport",
    "parse_health",
    "parse_report",
    "parse_task",
    "parse_teardown",
    "render_probe",
    "render_setup",
    "render_task",
    "render_teardown",
    "coordinator_lock",
    "imitated",
    "is_claude_code",
    "program",
    "secret_env_name",
    "secret_input",
    "task_input",
    "session_name",
    "socket_name",
]
