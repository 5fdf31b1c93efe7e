"""``logs``: the coordinator's message log from inside the sandbox, printed once or followed.

One shell script run in the sandbox finds claudeswarm's ``agent_messages.log`` (or, before the first
message, shows the panes' recent output), so the command needs nothing installed beyond tmux.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import threading
from collections.abc import Callable

from swarm_operator.console._sandbox import connect, e2b_errors
from swarm_operator.console._swarm import Swarm

__all__ = ["logs"]


def _logs_script(swarm: Swarm, follow: bool, lines: int) -> str:
    """Find claudeswarm's ``agent_messages.log`` and print (or follow) it.

    claudeswarm keeps the log in its project root: ``$CLAUDESWARM_ROOT``, else the directory the
    agents work in (where discovery ran). Before the first message there is no log; then the panes'
    recent output is shown instead, and ``follow`` waits for the log to appear (``tail -F``).
    """
    s, t = shlex.quote(swarm.socket), shlex.quote("=" + swarm.session)
    show_log = f'exec tail -n {lines} -F "$log"' if follow else f'tail -n {lines} "$log"; exit 0'
    then = f'exec tail -n {lines} -F "$log" 2>/dev/null' if follow else "exit 0"
    return f"""
dir=$(tmux -L {s} display-message -p -t {t}: '#{{pane_current_path}}' 2>/dev/null) || dir=
log=${{CLAUDESWARM_ROOT:-${{dir:-$HOME}}}}/agent_messages.log
if [ -f "$log" ]; then {show_log}; fi
echo "(no coordinator messages yet in $log; the agents' panes show:)"
for p in $(tmux -L {s} list-panes -s -t {t} -F '#{{pane_id}}' 2>/dev/null); do
    echo "==> pane $p <=="
    tmux -L {s} capture-pane -p -J -t "$p" -S -{lines} | grep -v '^$' || true
done
{then}
"""


def logs(
    swarm: Swarm, *, follow: bool = False, lines: int = 200, out: Callable[[str], None] | None = None
) -> int:
    """Print the coordinator's message log; with ``follow`` keep printing until Ctrl-C (exit 0)."""
    write = out or _write_stdout
    sandbox = connect(swarm)
    with e2b_errors(swarm.sandbox_id):
        if not follow:
            result = sandbox.commands.run(_logs_script(swarm, False, lines), timeout=60)
            write(result.stdout)
            return 0
        handle = sandbox.commands.run(_logs_script(swarm, True, lines), background=True, timeout=0)
    # The SDK blocks in native code between chunks, where Ctrl-C cannot reach Python: wait for the
    # stream in a thread, and for the end (or Ctrl-C) here.
    ended = threading.Event()

    def pump() -> None:
        with contextlib.suppress(Exception):
            handle.wait(on_stdout=write, on_stderr=write)  # the sync SDK calls back only from wait()
        ended.set()

    threading.Thread(target=pump, name="swarm-logs", daemon=True).start()
    try:
        while not ended.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(Exception):
            handle.kill()
    return 0


def _write_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
