# ---- shared helpers (constant text: no user value is ever interpolated below this line) ----
# Every user value arrives above as a shell-quoted assignment. Helpers write into REPLY instead of
# printing, so building a report of 100 panes forks no subshell per field.

_sw_now_ms() {
    # $EPOCHREALTIME's decimal separator follows the locale: keep the digits only.
    local t=${EPOCHREALTIME//[!0-9]/}
    REPLY=$(( 10#$t / 1000 ))
}

_sw_age_ms() {
    # How long process $1 has run, from the kernel's own start time (field 22 of /proc/PID/stat,
    # in clock ticks since boot) against /proc/uptime: an agent that was already running before
    # this script (a rerun, a scale, a self-heal) counts as settled at once. REPLY='' if unknown.
    local stat up ticks
    REPLY=''
    stat=$(< "/proc/$1/stat") 2>/dev/null || return 0
    read -r up _ < /proc/uptime 2>/dev/null || return 0
    stat=${stat##*) }
    read -r -a _sw_fields <<< "$stat"
    ticks=${_sw_fields[19]:-}
    [[ $ticks =~ ^[0-9]+$ && -n $_SW_CLK_TCK ]] || return 0
    REPLY=$(( ${up//./}0 - ticks * 1000 / _SW_CLK_TCK ))
}
_SW_CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo '')

_sw_abs() {
    # Relative paths are relative to $HOME, so "$HOME/..." needs no expansion of user text.
    case $1 in
        /*) REPLY=$1 ;;
        '') REPLY=$HOME ;;
        *) REPLY=$HOME/$1 ;;
    esac
}

_sw_json() {
    # JSON string literal of $1 into REPLY (RFC 8259 escaping; other bytes pass through).
    local s=$1 out='' c i
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    if [[ $s == *[[:cntrl:]]* ]]; then
        for (( i = 0; i < ${#s}; i++ )); do
            c=${s:i:1}
            if [[ $c == [[:cntrl:]] ]]; then
                printf -v c '\\u%04x' "'$c"
            fi
            out+=$c
        done
        s=$out
    fi
    REPLY="\"$s\""
}

_sw_tmux() {
    # -f: our own constant config (never the user's ~/.tmux.conf); -L: the resource's private socket.
    # 9>&-: a server started here must not inherit (and hold forever) setup's lock descriptor.
    # tmux reads an argument ending in ';' as a command separator, so a user value such as an agent
    # arg "x;" followed by "run-shell ..." would become a second tmux command. Every argument that
    # ends in ';' is escaped ('\;' is tmux's literal ';'); this script never separates commands in
    # one call, so no argument here is meant as a separator.
    local -a argv=()
    local a
    for a in "$@"; do
        [[ $a == *';' ]] && a="${a%;}\;"
        argv+=("$a")
    done
    tmux -f "$SWARM_TMUX_CONF" -L "$SWARM_SOCKET" "${argv[@]}" 9>&-
}

_sw_errors=()
_sw_error() {
    # _sw_error STEP AGENT_INDEX_OR_EMPTY MESSAGE -- recorded, reported, never fatal.
    local step agent msg
    _sw_json "$1"; step=$REPLY
    if [[ -n $2 ]]; then agent=$2; else agent=null; fi
    _sw_json "${3:0:500}"; msg=$REPLY
    _sw_errors+=("{\"step\":$step,\"agent\":$agent,\"message\":$msg}")
}

_sw_join() {
    # _sw_join ITEMS... -> REPLY="item,item,..."
    local IFS=,
    REPLY="$*"
}

_sw_booting() {
    # True while pid $1 is still our boot shell (it has not exec'd the agent yet). /proc is the
    # truth on Linux; pane_current_command is a weaker fallback (an agent may itself be "bash").
    local pid=$1 cmd=$2 a
    local -a argv=()
    if [[ -r /proc/$pid/cmdline ]]; then
        mapfile -d '' -t argv < "/proc/$pid/cmdline" 2>/dev/null || return 1
        for a in "${argv[@]}"; do
            [[ $a == "$SWARM_BOOT_TAG" ]] && return 0
        done
        return 1
    fi
    [[ $cmd == bash ]]
}

_sw_running() {
    # True while process $1 runs. A zombie does not: it has ended and only awaits its parent's wait
    # (tmux's, or init's once the server is gone). Field 3 of /proc/PID/stat is the state; the
    # command name before it is in parentheses and may itself hold spaces or parentheses.
    local stat
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    read -r stat 2>/dev/null < "/proc/$1/stat" || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# Pane table, indexed by agent index (the pane user option @swarm_agent set when the pane was made).
_sw_list_panes() {
    P_ID=() P_PID=() P_DEAD=() P_STATUS=() P_SIGNAL=() P_TARGET=() P_RESTARTS=() P_CMD=()
    EXTRA_IDS=()
    local out a id pid dead st sig target rs cmd
    out=$(_sw_tmux list-panes -s -t "=$SWARM_SESSION:" -F \
        '#{@swarm_agent}|#{pane_id}|#{pane_pid}|#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}|#{session_name}:#{window_index}.#{pane_index}|#{@swarm_restarts}|#{pane_current_command}' \
        2>/dev/null) || return 1
    while IFS='|' read -r a id pid dead st sig target rs cmd; do
        [[ -n $id ]] || continue
        if [[ ! $a =~ ^[0-9]+$ ]] || [[ -n ${P_ID[$a]+x} ]]; then
            EXTRA_IDS+=("$id")   # untagged (e.g. split by a human) or a duplicate
            continue
        fi
        P_ID[$a]=$id P_PID[$a]=$pid P_DEAD[$a]=${dead:-0} P_STATUS[$a]=$st P_SIGNAL[$a]=$sig
        P_TARGET[$a]=$target P_RESTARTS[$a]=${rs:-0} P_CMD[$a]=$cmd
    done <<< "$out"
    return 0
}

_sw_settled_dead() {
    # Dead, and tmux has collected how it ended (the pty can close before the exit is reaped).
    [[ ${P_DEAD[$1]} == 1 && -n ${P_STATUS[$1]}${P_SIGNAL[$1]} ]]
}

_sw_pane_json() {
    # _sw_pane_json INDEX ALIVE -> REPLY: one pane's report object.
    local i=$1 t p c st sg dead=false
    _sw_json "${P_TARGET[$i]}"; t=$REPLY
    _sw_json "${P_ID[$i]}"; p=$REPLY
    _sw_json "${P_CMD[$i]}"; c=$REPLY
    st=${P_STATUS[$i]}; [[ $st =~ ^[0-9]+$ ]] || st=null
    sg=${P_SIGNAL[$i]}; [[ $sg =~ ^[0-9]+$ ]] || sg=null
    [[ ${P_DEAD[$i]} == 1 ]] && dead=true
    REPLY="{\"index\":$i,\"target\":$t,\"pane_id\":$p,\"pid\":${P_PID[$i]:-null},\"alive\":$2,\"dead\":$dead,\"exit_status\":$st,\"exit_signal\":$sg,\"command\":$c,\"restarts\":${P_RESTARTS[$i]:-0}}"
}

_sw_last_output() {
    # Last non-empty line a pane printed (e.g. "command not found"), to explain a dead agent.
    # -S -400: a relayout may have pushed it (and a screenful of blank lines) into history.
    local out line last=''
    out=$(_sw_tmux capture-pane -p -J -t "$1" -S -400 2>/dev/null) || { REPLY=''; return 0; }
    while IFS= read -r line; do
        [[ $line == 'Pane is dead'* ]] && continue   # tmux's own remain-on-exit notice
        [[ -n ${line//[[:space:]]/} ]] && last=$line
    done <<< "$out"
    REPLY=${last:0:200}
}

_sw_emit() {
    # The one machine-read output: a JSON object between markers, on lines of its own.
    printf '\n%s\n%s\n%s\n' "$SWARM_MARK_BEGIN" "$1" "$SWARM_MARK_END"
}
_sw_mcp_check() {
    # _sw_mcp_check TOKEN_FILE DEADLINE_EPOCH_S -> prints one JSON object (an McpReport).
    # A real MCP exchange with the gateway on 127.0.0.1:$SWARM_MCP_PORT/mcp (streamable HTTP, the
    # transport E2B documents for it): initialize, notifications/initialized, tools/list, then the
    # session is closed. Retried until the deadline (a gateway just started needs a moment).
    # Per-server detail comes from GET /health only when the gateway offers it (our stand-in does).
    python3 - "http://127.0.0.1:$SWARM_MCP_PORT" "$1" "$2" <<'SW_MCP_PY'
import json, sys, time, urllib.error, urllib.request
base, token_file, deadline = sys.argv[1], sys.argv[2], float(sys.argv[3])
token = open(token_file).read().strip()
auth = {"Authorization": "Bearer " + token}

def rpc(method, rid, params, session):
    body = {"jsonrpc": "2.0", "method": method, "params": params}
    if rid is not None:
        body["id"] = rid
    headers = dict(auth, **{"Content-Type": "application/json",
                            "Accept": "application/json, text/event-stream"})
    if session:
        headers["Mcp-Session-Id"] = session
    req = urllib.request.Request(base + "/mcp", data=json.dumps(body).encode(), headers=headers,
                                 method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        session = resp.headers.get("Mcp-Session-Id") or session
        kind = resp.headers.get("Content-Type", "")
        raw = resp.read().decode("utf-8", "replace")
    if rid is None:
        return None, session
    if kind.startswith("text/event-stream"):
        found = [json.loads(l[5:]) for l in raw.splitlines() if l.startswith("data:") and l[5:].strip()]
    else:
        found = [json.loads(raw)] if raw.strip() else []
    for msg in [m for f in found for m in (f if isinstance(f, list) else [f])]:
        if isinstance(msg, dict) and msg.get("id") == rid:
            if "error" in msg:
                raise RuntimeError("%s: %s" % (method, (msg["error"] or {}).get("message")))
            return msg.get("result") or {}, session
    raise RuntimeError("%s: no answer in the response" % method)

def exchange():
    _, session = rpc("initialize", 1, {"protocolVersion": "2025-03-26", "capabilities": {},
                                       "clientInfo": {"name": "swarm-operator", "version": "1"}}, None)
    rpc("notifications/initialized", None, {}, session)
    tools, cursor, rid = 0, None, 2
    while True:
        result, session = rpc("tools/list", rid, {"cursor": cursor} if cursor else {}, session)
        tools += len(result.get("tools") or [])
        cursor, rid = result.get("nextCursor"), rid + 1
        if not cursor or rid > 50:
            break
    if session:
        try:
            urllib.request.urlopen(urllib.request.Request(
                base + "/mcp", headers=dict(auth, **{"Mcp-Session-Id": session}), method="DELETE"), timeout=2)
        except Exception:
            pass
    return tools

def health():
    try:
        with urllib.request.urlopen(urllib.request.Request(base + "/health", headers=auth), timeout=3) as resp:
            body = json.load(resp)
        return {str(k): {"ok": bool(v.get("ok")), "message": str(v.get("message", ""))[:300]}
                for k, v in (body.get("servers") or {}).items()}
    except Exception:
        return None

last = "no answer"
while True:
    try:
        tools = exchange()
        print(json.dumps({"gateway": True, "tools": tools, "servers": health(), "error": None}))
        break
    except urllib.error.HTTPError as exc:
        last = "HTTP %d %s" % (exc.code, exc.reason)
    except Exception as exc:
        last = str(exc)[:300] or type(exc).__name__
    if time.time() >= deadline:
        print(json.dumps({"gateway": False, "servers": None,
                          "error": "the MCP gateway did not answer on /mcp: " + last}))
        break
    time.sleep(0.2)
SW_MCP_PY
}

P_ID=() P_PID=() P_DEAD=() P_STATUS=() P_SIGNAL=() P_TARGET=() P_RESTARTS=() P_CMD=() EXTRA_IDS=()
# ---- end of shared helpers ----

# -- git with the workspace credential (the setup's workspace step and the push script) --
# git asks a helper that prints the password from $_sw_pw_file (0600, in the 0700 state directory,
# written by a builtin); the helper's text (on git's command line) holds a path only, and
# -c credential.helper= clears any configured helper, so nothing reaches .git/config or a credential
# store. Hooks are off. Every network git call is bounded (SWARM_GIT_TIMEOUT_S): a server that accepts
# and never answers fails the step by name, well inside the script's own timeout.
_sw_cred_helper='!f() { test "$1" = get || exit 0; test -s "$_SW_GIT_PWFILE" || exit 0; printf "username=%s\npassword=%s\n" "$_SW_GIT_USER" "$(cat "$_SW_GIT_PWFILE")"; }; f'
_sw_git() {
    local rc=0 bound=()
    command -v timeout >/dev/null 2>&1 && bound=(timeout "$SWARM_GIT_TIMEOUT_S")
    GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=/bin/false SSH_ASKPASS=/bin/false _SW_GIT_USER=$SWARM_WS_USERNAME \
        _SW_GIT_PWFILE=$_sw_pw_file \
        ${bound[@]+"${bound[@]}"} \
        git -c credential.helper= -c "credential.helper=$_sw_cred_helper" -c core.hooksPath=/dev/null "$@" 9>&- || rc=$?
    if ((rc == 124)); then
        printf 'git %s timed out after %ss (the server did not answer)\n' "$1" "$SWARM_GIT_TIMEOUT_S" >&2
    fi
    return "$rc"
}
