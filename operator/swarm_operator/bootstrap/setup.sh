# ---- setup: converge the resource's tmux session to exactly $SWARM_AGENTS live agents ----
# Idempotent in both directions: a rerun keeps healthy agents (same pids), starts missing panes,
# removes surplus ones (scale down), restarts dead agents in place, and re-runs discovery.

unset -v TMUX TMUX_PANE   # never talk to a tmux server this script happens to run under

declare -A _sw_step=()
_sw_step_begin() { _sw_now_ms; _sw_t0=$REPLY; }
_sw_step_end() { _sw_now_ms; _sw_step[$1]=$(( REPLY - _sw_t0 )); }

_sw_created=() _sw_removed=() _sw_restarted=() _sw_env_missing=() _sw_installed=()
_sw_coord_installed=false _sw_coord_discovered=null _sw_coord_error=null
_sw_timed_out=false _sw_server=false

# -- prepare: directories, private tmux config, one setup at a time --
_sw_step_begin
_sw_abs "$SWARM_STATE_DIR"; SWARM_STATE_DIR=$REPLY
_sw_abs "$SWARM_WORKDIR"; SWARM_WORKDIR=$REPLY
mkdir -p -- "$SWARM_STATE_DIR"
chmod 700 -- "$SWARM_STATE_DIR"
mkdir -p -- "$SWARM_WORKDIR"
SWARM_TMUX_CONF=$SWARM_STATE_DIR/tmux.conf
SWARM_ENV_FILE=$SWARM_STATE_DIR/agent.env
# remain-on-exit keeps a dead agent's pane (and its last words) so it is reported, then respawned.
# The pipe-pane hooks keep those last words: tmux (3.3) closes a pane's pty as soon as it reaps the
# agent, discarding output it has not read yet ("command not found" and the like, lost about one time
# in thirty, more under load); only while a pipe-pane is open does it first drain the pty. The hooks
# run in the same command queue as the command that spawned the agent, so no exit can come first, and
# the pipe outlives the agent: a respawned agent keeps it. The pipe is a constant command (one `cat`
# per pane, to /dev/null): no path or user text in it. Every line must be valid for tmux 3.3 (it has
# no after-respawn-pane hook): a config error puts pane 0 in view mode, where Ctrl-C never reaches it.
printf '%s\n' 'set -g remain-on-exit on' 'set -g history-limit 5000' 'set -g exit-empty on' \
    "set-hook -g after-new-session 'pipe-pane -O \"exec cat >/dev/null\"'" \
    "set-hook -g after-new-window 'pipe-pane -O \"exec cat >/dev/null\"'" \
    "set-hook -g after-split-window 'pipe-pane -O \"exec cat >/dev/null\"'" \
    > "$SWARM_TMUX_CONF"
if command -v flock >/dev/null 2>&1; then
    # Two overlapping runs (an operator retry) must not both create the missing panes.
    exec 9> "$SWARM_STATE_DIR/setup.lock"
    flock -w "$SWARM_LOCK_TIMEOUT_S" 9 || _sw_error prepare '' "another setup holds $SWARM_STATE_DIR/setup.lock"
fi
if [[ $SWARM_COORD_ENABLED == 1 && $SWARM_COORD_INSTALL != preinstalled ]]; then
    SWARM_COORD_VENV=$SWARM_STATE_DIR/coordinator
    SWARM_COORD_BIN=$SWARM_COORD_VENV/bin
    PATH=$SWARM_COORD_BIN:$PATH
else
    SWARM_COORD_BIN=''
fi
_sw_step_end prepare

# -- env: agent env values from this process's environment (the SDK's envs=) into a 0600 file --
_sw_step_begin
_sw_tmp=$SWARM_ENV_FILE.tmp.$$
: > "$_sw_tmp"
chmod 600 -- "$_sw_tmp"
for _sw_n in ${SWARM_ENV_NAMES[@]+"${SWARM_ENV_NAMES[@]}"}; do
    if [[ -v $_sw_n ]]; then
        printf '%s=%q\n' "$_sw_n" "${!_sw_n}" >> "$_sw_tmp"
    else
        _sw_env_missing+=("$_sw_n")
        _sw_error env '' "environment variable $_sw_n was not provided"
    fi
done
mv -f -- "$_sw_tmp" "$SWARM_ENV_FILE"
# From here on no child (tmux server, pip, discovery) inherits an agent secret.
for _sw_n in ${SWARM_ENV_NAMES[@]+"${SWARM_ENV_NAMES[@]}"}; do
    unset -v "$_sw_n"
done
_sw_step_end env

# -- workspace: clone the repository at the pinned commit (idempotent: a rerun at that commit is a no-op) --
# Credentials: git asks a helper that prints $SWARM_SECRET_GIT_PASSWORD from this script's
# environment. The helper's text (on git's command line) holds variable names only; nothing is
# written to .git/config or any credential store (-c credential.helper= clears configured helpers).
_sw_step_begin
_sw_blocked=false _sw_ws_commit='' _sw_ws_error='' _sw_ws_floating=false
_sw_cred_helper='!f() { test "$1" = get || exit 0; test -n "${SWARM_SECRET_GIT_PASSWORD-}" || exit 0; printf "username=%s\npassword=%s\n" "$_SW_GIT_USER" "$SWARM_SECRET_GIT_PASSWORD"; }; f'
# Every network git call is bounded (SWARM_GIT_TIMEOUT_S): a server that accepts and never answers
# fails the workspace step by name, well inside the setup run's own timeout.
_sw_git_timeout=()
command -v timeout >/dev/null 2>&1 && _sw_git_timeout=(timeout "$SWARM_GIT_TIMEOUT_S")
_sw_git() {
    local rc=0
    GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=/bin/false SSH_ASKPASS=/bin/false _SW_GIT_USER=$SWARM_WS_USERNAME \
        ${_sw_git_timeout[@]+"${_sw_git_timeout[@]}"} \
        git -c credential.helper= -c "credential.helper=$_sw_cred_helper" -c core.hooksPath=/dev/null "$@" 9>&- || rc=$?
    if ((rc == 124)); then
        printf 'git %s timed out after %ss (the server did not answer)\n' "$1" "$SWARM_GIT_TIMEOUT_S" >&2
    fi
    return "$rc"
}
_sw_ws_fail() { _sw_ws_error=$1; _sw_blocked=true; _sw_error workspace '' "$1"; }
_sw_workspace() {
    local dir=$SWARM_WORKDIR want='' out sha name tag_sha='' head_sha='' exact_sha='' origin current
    if ! command -v git >/dev/null 2>&1; then
        _sw_ws_fail "git is not installed in the sandbox (use a template that has it: swarm-operator template)"
        return 0
    fi
    if [[ $SWARM_WS_REF =~ ^[0-9a-f]{40}$ ]]; then
        want=$SWARM_WS_REF
    elif [[ -d $dir/.git && -f $SWARM_STATE_DIR/workspace.resolved \
            && "$(< "$SWARM_STATE_DIR/workspace.resolved")" == "$SWARM_WS_REPO $SWARM_WS_REF "* ]]; then
        # Resolved (and verified to be a tag) by an earlier run: a tag does not move, so no network.
        want=$(< "$SWARM_STATE_DIR/workspace.resolved"); want=${want##* }
    else
        if ! out=$(_sw_git ls-remote "$SWARM_WS_REPO" 2>&1); then
            _sw_ws_fail "git ls-remote $SWARM_WS_REPO failed: ${out:$(( ${#out} > 300 ? ${#out} - 300 : 0 ))}"
            return 0
        fi
        while read -r sha name; do
            case $name in
                "refs/tags/$SWARM_WS_REF^{}"|"$SWARM_WS_REF^{}") tag_sha=$sha ;;   # peeled annotated tag
                "refs/tags/$SWARM_WS_REF"|"$SWARM_WS_REF")
                    [[ $name == refs/tags/* ]] && tag_sha=${tag_sha:-$sha}
                    [[ $name == "$SWARM_WS_REF" ]] && exact_sha=$sha ;;
                "refs/heads/$SWARM_WS_REF") head_sha=$sha ;;
            esac
        done <<< "$out"
        if [[ -n $tag_sha ]]; then
            want=$tag_sha
        elif [[ $SWARM_WS_FLOATING_OK == 1 && -n $head_sha$exact_sha ]]; then
            want=${exact_sha:-$head_sha}
        elif [[ -n $head_sha$exact_sha ]]; then
            _sw_ws_floating=true
            _sw_ws_fail "ref $SWARM_WS_REF is a branch of $SWARM_WS_REPO, not a tag: branches float; pin a tag or a commit SHA, or set allowFloatingRef"
            return 0
        else
            _sw_ws_fail "ref $SWARM_WS_REF is not a tag of $SWARM_WS_REPO (use a tag or a full 40-hex commit SHA)"
            return 0
        fi
    fi
    if [[ -d $dir/.git ]]; then
        origin=$(git -C "$dir" config --get remote.origin.url 2>/dev/null || true)
        if [[ $origin != "$SWARM_WS_REPO" ]]; then
            _sw_ws_fail "$dir is a clone of ${origin:-an unknown remote}, not $SWARM_WS_REPO"
            return 0
        fi
        current=$(git -C "$dir" rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null || true)
        sha=$(git -C "$dir" rev-parse -q --verify "$want^{commit}" 2>/dev/null || true)
        if [[ -n $current && ( $current == "$want" || $current == "$sha" ) ]]; then
            _sw_ws_commit=$current
            return 0
        fi
    elif [[ -e $dir && -n "$(ls -A -- "$dir" 2>/dev/null)" ]]; then
        _sw_ws_fail "$dir exists, is not empty and is not a git clone: choose another workspace.path"
        return 0
    else
        mkdir -p -- "$dir"
        if ! out=$(git init -q -- "$dir" 2>&1 && git -C "$dir" remote add origin "$SWARM_WS_REPO" 2>&1); then
            _sw_ws_fail "git init failed: ${out:$(( ${#out} > 300 ? ${#out} - 300 : 0 ))}"
            return 0
        fi
    fi
    # The commit alone where the server allows it (GitHub does), else every branch and tag.
    if ! _sw_git -C "$dir" fetch -q origin "$want" >/dev/null 2>&1 \
        && ! out=$(_sw_git -C "$dir" fetch -q --tags origin '+refs/heads/*:refs/remotes/origin/*' 2>&1); then
        _sw_ws_fail "git fetch from $SWARM_WS_REPO failed: ${out:$(( ${#out} > 300 ? ${#out} - 300 : 0 ))}"
        return 0
    fi
    if ! out=$(git -C "$dir" -c advice.detachedHead=false checkout -q --detach "$want^{commit}" -- 2>&1); then
        _sw_ws_fail "cannot check out $SWARM_WS_REF ($want): ${out:$(( ${#out} > 300 ? ${#out} - 300 : 0 ))}"
        return 0
    fi
    _sw_ws_commit=$(git -C "$dir" rev-parse HEAD)
    [[ $SWARM_WS_REF =~ ^[0-9a-f]{40}$ ]] || printf '%s %s %s' "$SWARM_WS_REPO" "$SWARM_WS_REF" "$want" \
        > "$SWARM_STATE_DIR/workspace.resolved"
}
[[ -n $SWARM_WS_REPO ]] && _sw_workspace
unset -v SWARM_SECRET_GIT_PASSWORD
_sw_step_end workspace

# -- mcp: E2B's MCP gateway, configured from a 0600 file (never from its command line) --
# E2B's SDK starts the gateway as `mcp-gateway --config <JSON with the tokens>`, which puts every
# token in the process list; this step builds the same JSON in a 0600 file from SWARM_SECRET_*
# variables and starts the gateway with --config-file, its access token in its environment. A
# gateway without --config-file is refused (reported as unsupported), never started the SDK's way.
_sw_step_begin
_sw_mcp_report=null
_sw_mcp_build='
import json, os, sys
spec = json.loads(os.environ["SWARM_MCP"])
config = spec["config"]
for server, field, env in spec.get("secrets", []):
    if env not in os.environ:
        sys.exit("the value for %s.%s was not provided" % (server, field))
    config.setdefault(server, {})[field] = os.environ[env]
for server in spec.get("workspace", []):
    config.setdefault(server, {})["paths"] = [os.environ["SWARM_WORKDIR"]]
json.dump(config, sys.stdout, sort_keys=True)
'
if [[ -n $SWARM_MCP && $_sw_blocked == false ]]; then
    _sw_mcp_dir=$SWARM_STATE_DIR/mcp-gateway
    mkdir -p -- "$_sw_mcp_dir" && chmod 700 -- "$_sw_mcp_dir"
    [[ -s $_sw_mcp_dir/token ]] || python3 -c 'import secrets; print(secrets.token_hex(24))' > "$_sw_mcp_dir/token"
    _sw_started=false _sw_unsupported=false _sw_gave_up=false
    _sw_restarts=$(cat -- "$_sw_mcp_dir/restarts" 2>/dev/null || true)
    [[ $_sw_restarts =~ ^[0-9]+$ ]] || _sw_restarts=0
    if SWARM_MCP=$SWARM_MCP SWARM_WORKDIR=$SWARM_WORKDIR python3 -c "$_sw_mcp_build" > "$_sw_mcp_dir/config.json.new" 2> "$_sw_mcp_dir/build.err"; then
        _sw_pid=$(cat -- "$_sw_mcp_dir/pid" 2>/dev/null || true)
        _sw_same=false
        cmp -s -- "$_sw_mcp_dir/config.json.new" "$_sw_mcp_dir/config.json" 2>/dev/null && _sw_same=true
        if _sw_running "$_sw_pid" && [[ $_sw_same == true ]]; then   # (a zombie is not running)
            rm -f -- "$_sw_mcp_dir/config.json.new"   # running with exactly this configuration
        else
            # A gateway that died under an unchanged configuration is restarted within the same
            # budget as an agent (healthCheck.maxRestarts); a new configuration starts the count afresh.
            [[ $_sw_same == true ]] || _sw_restarts=0
            if [[ $_sw_same == true && $_sw_pid =~ ^[0-9]+$ ]]; then
                if (( SWARM_MAX_RESTARTS >= 0 && _sw_restarts >= SWARM_MAX_RESTARTS )); then
                    _sw_gave_up=true
                else
                    _sw_restarts=$(( _sw_restarts + 1 ))
                fi
            fi
            printf '%s' "$_sw_restarts" > "$_sw_mcp_dir/restarts"
            if [[ $_sw_gave_up == true ]]; then
                rm -f -- "$_sw_mcp_dir/config.json.new"
                _sw_msg="the MCP gateway died again with its restarts (healthCheck.maxRestarts) spent; not restarted. Its log ends: $(tail -n 1 -- "$_sw_mcp_dir/gateway.log" 2>/dev/null | cut -c1-200)"
                _sw_json "$_sw_msg"
                # Reported, not an error: the agents keep running; health and status.mcp say it.
                _sw_mcp_report="{\"gateway\":false,\"servers\":null,\"restarts\":$_sw_restarts,\"error\":$REPLY}"
            else
                [[ $_sw_pid =~ ^[0-9]+$ ]] && kill "$_sw_pid" 2>/dev/null && sleep 0.2
                mv -f -- "$_sw_mcp_dir/config.json.new" "$_sw_mcp_dir/config.json"
                _sw_started=true
            fi
        fi
    else
        _sw_error mcp '' "cannot build the MCP gateway configuration: $(tail -n 1 -- "$_sw_mcp_dir/build.err")"
        rm -f -- "$_sw_mcp_dir/config.json.new"
    fi
    # No secret outlives this point in the script's environment (the gateway gets its file).
    for _sw_n in $(compgen -v SWARM_SECRET_ || true); do unset -v "$_sw_n"; done
    if [[ $_sw_started == true ]]; then
        if ! command -v "$SWARM_MCP_GATEWAY" >/dev/null 2>&1; then
            _sw_started=false
            _sw_error mcp '' "$SWARM_MCP_GATEWAY is not installed in the sandbox (use E2B's mcp-gateway template or swarm-operator template)"
        else
            # Whatever --help exits with, its text says whether the option exists.
            _sw_help=$(timeout 10 "$SWARM_MCP_GATEWAY" --help < /dev/null 2>&1 || true)
            if [[ $_sw_help != *--config-file* ]]; then
                _sw_started=false _sw_unsupported=true
                rm -f -- "$_sw_mcp_dir/config.json"   # nothing will read it: no secret left behind
                _sw_msg="the sandbox's $SWARM_MCP_GATEWAY has no --config-file option; starting it E2B's way (--config <JSON>) would put the MCP secrets on its command line, which swarm-operator never does. Use a template whose gateway reads its configuration from a file, or remove spec.mcp"
                _sw_json "$_sw_msg"
                _sw_mcp_report="{\"gateway\":false,\"unsupported\":true,\"servers\":null,\"error\":$REPLY}"
                _sw_error mcp '' "$_sw_msg"
            else
                ( cd -- "$_sw_mcp_dir" && GATEWAY_ACCESS_TOKEN=$(< "$_sw_mcp_dir/token") exec setsid \
                    "$SWARM_MCP_GATEWAY" --config-file "$_sw_mcp_dir/config.json" --port "$SWARM_MCP_PORT" \
                    < /dev/null > "$_sw_mcp_dir/gateway.log" 2>&1 9>&- ) &
                printf '%s' "$!" > "$_sw_mcp_dir/pid"
            fi
        fi
    fi
    if [[ $_sw_unsupported == false && $_sw_gave_up == false ]]; then
        _sw_now_ms
        _sw_out=$(_sw_mcp_check "$_sw_mcp_dir/token" "$(( REPLY / 1000 + SWARM_MCP_START_TIMEOUT_S ))" 2>&1 || true)
        if [[ $_sw_out == '{"gateway": true'* ]]; then
            _sw_mcp_report="${_sw_out%$'\n'}"
            _sw_mcp_report="${_sw_mcp_report%\}},\"started\":$_sw_started,\"restarts\":$_sw_restarts}"
        elif [[ $_sw_out == '{"gateway": false'* ]]; then
            _sw_mcp_report="${_sw_out%$'\n'}"
            _sw_mcp_report="${_sw_mcp_report%\}},\"restarts\":$_sw_restarts}"
            _sw_e=$(printf '%s' "$_sw_out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["error"])' 2>/dev/null || true)
            _sw_error mcp '' "MCP gateway check failed: ${_sw_e:-$_sw_out}; its log ends: $(tail -n 1 -- "$_sw_mcp_dir/gateway.log" 2>/dev/null | cut -c1-200)"
        else
            _sw_error mcp '' "MCP gateway check failed: ${_sw_out:$(( ${#_sw_out} > 300 ? ${#_sw_out} - 300 : 0 ))}"
        fi
    fi
fi
for _sw_n in $(compgen -v SWARM_SECRET_ || true); do unset -v "$_sw_n"; done
_sw_step_end mcp

# -- agent configuration (Claude Code): onboarding done, coordinator allowed + hooked, gateway --
_sw_step_begin
_sw_agent_files=()
_sw_agent_py='
import json, os, sys
home, workdir = os.environ["HOME"], os.environ["SWARM_WORKDIR"]
spec = json.loads(os.environ["SWARM_AGENT_CONFIG"])
def merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base.get(k), v)
        return out
    return over
def write(rel, text):
    path = os.path.join(home, rel)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".swarm-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    print(rel)
try:
    with open(os.path.join(home, ".claude.json")) as f:
        current = json.load(f)
    current = current if isinstance(current, dict) else {}
except (OSError, ValueError):
    current = {}
ours = {"hasCompletedOnboarding": True,
        "projects": {workdir: {"hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True}}}
token_file = os.environ.get("SWARM_MCP_TOKEN_FILE", "")
if token_file and os.path.exists(token_file):
    token = open(token_file).read().strip()
    ours["mcpServers"] = {"e2b-mcp-gateway": {"type": "http", "url": os.environ["SWARM_MCP_URL"],
                                              "headers": {"Authorization": "Bearer " + token}}}
write(".claude.json", json.dumps(merge(merge(current, ours), spec.get("claude_json", {})), indent=2) + "\n")
write(".claude/settings.json", json.dumps(spec.get("settings", {}), indent=2) + "\n")
for name, text in sorted(spec.get("files", {}).items()):
    write(".claude/" + name, text)
'
if [[ -n $SWARM_AGENT_CONFIG && $_sw_blocked == false ]]; then
    _sw_tok=''
    [[ -n $SWARM_MCP ]] && _sw_tok=$SWARM_STATE_DIR/mcp-gateway/token
    if _sw_out=$(SWARM_WORKDIR=$SWARM_WORKDIR SWARM_AGENT_CONFIG=$SWARM_AGENT_CONFIG SWARM_MCP_TOKEN_FILE=$_sw_tok \
            SWARM_MCP_URL="http://127.0.0.1:$SWARM_MCP_PORT/mcp" python3 -c "$_sw_agent_py" 2>&1); then
        mapfile -t _sw_agent_files <<< "$_sw_out"
    else
        _sw_error agent_config '' "writing the agent configuration failed: ${_sw_out:$(( ${#_sw_out} > 300 ? ${#_sw_out} - 300 : 0 ))}"
    fi
fi
_sw_step_end agent_config

# -- tmux: one server on the private socket, one session, one tagged pane per agent --
_sw_step_begin
# The boot shell sources the env file and execs the agent; user values reach it as argv, never as
# shell text. SWARM_BOOT_TAG in its argv tells "still booting" from "the agent runs".
_sw_boot='export SWARM_AGENT_INDEX=$1 SWARM_AGENT_ID=agent-$1 SWARM_SESSION=$3 SWARM_PANE=${TMUX_PANE-}
[ -n "$4" ] && PATH=$4:$PATH
set -a; . "$2" || exit 97; set +a
shift 4
exec -- "$@"'
_sw_launch() {
    # argv for agent $1: a command tmux executes directly (several arguments: no shell in between).
    REPLY_ARGV=("$BASH" --noprofile --norc -c "$_sw_boot" "$SWARM_BOOT_TAG"
        "$1" "$SWARM_ENV_FILE" "$SWARM_SESSION" "$SWARM_COORD_BIN" "$SWARM_COMMAND"
        ${SWARM_ARGS[@]+"${SWARM_ARGS[@]}"})
}
_sw_tag() {
    _sw_tmux set-option -p -t "$1" @swarm_agent "$2" && _sw_tmux set-option -p -t "$1" @swarm_restarts "${3:-0}"
}

if [[ $_sw_blocked == true ]]; then
    :   # no agents without their workspace: the report says why
elif _sw_tmux has-session -t "=$SWARM_SESSION" 2>/dev/null; then
    _sw_server=true
    # A server started by an older script lacks the hooks: apply the config again (idempotent).
    _sw_tmux source-file "$SWARM_TMUX_CONF" >/dev/null 2>&1 || _sw_error tmux '' "could not apply $SWARM_TMUX_CONF"
else
    _sw_launch 0
    if _sw_out=$(_sw_tmux new-session -d -s "$SWARM_SESSION" -n agents -x "$SWARM_WIDTH" -y "$SWARM_HEIGHT" \
            -c "$SWARM_WORKDIR" -P -F '#{pane_id}' -- "${REPLY_ARGV[@]}" 2>&1); then
        _sw_tag "$_sw_out" 0 || _sw_error tmux 0 "could not tag pane $_sw_out"
        _sw_created+=(0)
        _sw_server=true
    else
        _sw_error tmux '' "could not start the tmux session: $_sw_out"
    fi
fi

if [[ $_sw_server == true ]] && _sw_list_panes; then
    # Restart dead agents in place (same pane, same index), counting restarts on the pane.
    for (( _sw_i = 0; _sw_i < SWARM_AGENTS; _sw_i++ )); do
        [[ -n ${P_ID[$_sw_i]+x} && ${P_DEAD[$_sw_i]} == 1 ]] || continue
        [[ $SWARM_RESTART_DEAD == 1 ]] || continue
        # Past its restart budget an agent stays dead (and reported), never restarted in a loop.
        (( SWARM_MAX_RESTARTS < 0 || ${P_RESTARTS[$_sw_i]:-0} < SWARM_MAX_RESTARTS )) || continue
        [[ " ${_sw_created[*]-} " == *" $_sw_i "* ]] && continue   # born and died in this run: report it
        _sw_launch "$_sw_i"
        if _sw_out=$(_sw_tmux respawn-pane -k -t "${P_ID[$_sw_i]}" -c "$SWARM_WORKDIR" -- "${REPLY_ARGV[@]}" 2>&1); then
            _sw_tag "${P_ID[$_sw_i]}" "$_sw_i" $(( ${P_RESTARTS[$_sw_i]:-0} + 1 )) || true
            # The pane kept its pipe, unless an older script made it: then it gets one now (late,
            # but from now on). Never pipe-pane a piped pane: that closes its pipe first.
            if [[ $(_sw_tmux display-message -p -t "${P_ID[$_sw_i]}" '#{pane_pipe}' 2>/dev/null) == 0 ]]; then
                _sw_tmux pipe-pane -O -t "${P_ID[$_sw_i]}" 'exec cat >/dev/null' 2>/dev/null || true
            fi
            _sw_restarted+=("$_sw_i")
        else
            _sw_error tmux "$_sw_i" "could not restart the agent: $_sw_out"
        fi
    done
    # Start missing agents. Tiled relayout after every split keeps room for the next one; if the
    # window is full anyway ("no space for new pane"), the agent gets a new window instead.
    # Splitting after the previous agent's pane keeps pane order = agent order (session:0.N).
    _sw_prev="=$SWARM_SESSION:"
    for (( _sw_i = 0; _sw_i < SWARM_AGENTS; _sw_i++ )); do
        if [[ -n ${P_ID[$_sw_i]+x} ]]; then
            _sw_prev=${P_ID[$_sw_i]}
            continue
        fi
        _sw_launch "$_sw_i"
        if _sw_out=$(_sw_tmux split-window -d -t "$_sw_prev" -c "$SWARM_WORKDIR" -P -F '#{pane_id}' \
                -- "${REPLY_ARGV[@]}" 2>&1) \
            || _sw_out=$(_sw_tmux new-window -d -t "=$SWARM_SESSION:" -c "$SWARM_WORKDIR" -P -F '#{pane_id}' \
                -- "${REPLY_ARGV[@]}" 2>&1); then
            _sw_tag "$_sw_out" "$_sw_i" || _sw_error tmux "$_sw_i" "could not tag pane $_sw_out"
            _sw_tmux select-layout -t "$_sw_out" tiled >/dev/null 2>&1 || true
            _sw_created+=("$_sw_i")
            _sw_prev=$_sw_out
        else
            _sw_error tmux "$_sw_i" "could not start a pane: $_sw_out"
        fi
    done
    # Remove surplus panes: agents at index >= N (scale down), duplicates, untagged panes.
    for _sw_i in "${!P_ID[@]}"; do
        (( _sw_i >= SWARM_AGENTS )) || continue
        if _sw_tmux kill-pane -t "${P_ID[$_sw_i]}" 2>/dev/null; then
            _sw_removed+=("$_sw_i")
        else
            _sw_error tmux "$_sw_i" "could not remove surplus pane ${P_ID[$_sw_i]}"
        fi
    done
    for _sw_id in ${EXTRA_IDS[@]+"${EXTRA_IDS[@]}"}; do
        _sw_tmux kill-pane -t "$_sw_id" 2>/dev/null || _sw_error tmux '' "could not remove stray pane $_sw_id"
    done
    _sw_tmux select-layout -t "=$SWARM_SESSION:" tiled >/dev/null 2>&1 || true
elif [[ $_sw_server == true ]]; then
    _sw_error tmux '' "could not list the panes of session $SWARM_SESSION"
fi
_sw_step_end tmux

# -- coordinator install (runs while the agents boot) --
_sw_step_begin
_sw_coord_fail() { _sw_json "$1"; _sw_coord_error=$REPLY; _sw_error coordinator '' "$1"; }
if [[ $SWARM_COORD_ENABLED == 1 ]]; then
    if [[ $SWARM_COORD_INSTALL == preinstalled ]]; then
        if command -v claudeswarm >/dev/null 2>&1; then
            _sw_coord_installed=true
        else
            _sw_coord_fail 'coordinator is "preinstalled" but claudeswarm is not on PATH'
        fi
    else
        _sw_marker=$SWARM_COORD_VENV/.swarm-requirement
        if [[ -x $SWARM_COORD_BIN/claudeswarm && -f $_sw_marker && "$(< "$_sw_marker")" == "$SWARM_COORD_INSTALL" ]]; then
            _sw_coord_installed=true   # already satisfied: exactly this requirement was installed
        elif [[ -f $HOME/.swarm-template/coordinator && "$(< "$HOME/.swarm-template/coordinator")" == "$SWARM_COORD_INSTALL" ]] \
                && command -v claudeswarm >/dev/null 2>&1; then
            _sw_coord_installed=true   # the prebuilt template (swarm-operator template) ships this exact pin
        else
            _sw_log=$SWARM_STATE_DIR/coordinator-install.log
            _sw_timeout=()
            command -v timeout >/dev/null 2>&1 && _sw_timeout=(timeout "$SWARM_INSTALL_TIMEOUT_S")
            # "--" ends pip's options: a requirement can never be read as a flag (--index-url=...).
            if { [[ -x $SWARM_COORD_VENV/bin/python ]] || "$SWARM_PYTHON" -m venv -- "$SWARM_COORD_VENV"; } > "$_sw_log" 2>&1 \
                && ${_sw_timeout[@]+"${_sw_timeout[@]}"} "$SWARM_COORD_VENV/bin/python" -m pip install \
                    --disable-pip-version-check --no-input --quiet -- "$SWARM_COORD_INSTALL" >> "$_sw_log" 2>&1 \
                && [[ -x $SWARM_COORD_BIN/claudeswarm ]]; then
                printf '%s' "$SWARM_COORD_INSTALL" > "$_sw_marker"
                _sw_coord_installed=true
                _sw_installed+=(coordinator)
            else
                _sw_last=$(tail -n 3 -- "$_sw_log" 2>/dev/null | tr '\n' ' ' || true)
                _sw_coord_fail "installing the coordinator failed (see $_sw_log): ${_sw_last:0:300}"
            fi
        fi
    fi
fi
_sw_step_end coordinator_install

# -- ready: poll (bounded) until every agent is alive (exec'd, pane not dead, for settle time) or dead --
# An agent counts as alive once it has run for SWARM_SETTLE_MS (its age from the kernel's start
# time; since first seen exec'd where /proc cannot say): an agent that crashes at once (bad args,
# missing key) is then reported dead rather than ready.
_sw_step_begin
_sw_now_ms; _sw_deadline=$(( REPLY + SWARM_READY_TIMEOUT_MS ))
declare -A _sw_alive=() _sw_seen=() _sw_dead_seen=()
while [[ $_sw_server == true ]]; do
    _sw_alive=()
    _sw_pending=0
    if _sw_list_panes; then
        _sw_now_ms; _sw_now=$REPLY
        for (( _sw_i = 0; _sw_i < SWARM_AGENTS; _sw_i++ )); do
            if [[ -z ${P_ID[$_sw_i]+x} ]] || _sw_settled_dead "$_sw_i"; then
                continue
            elif [[ ${P_DEAD[$_sw_i]} == 1 ]]; then
                # tmux sometimes never learns the exit status of a process that ended at once:
                # dead for half a second is dead enough.
                (( _sw_now - ${_sw_dead_seen[$_sw_i]:=$_sw_now} >= 500 )) || _sw_pending=$(( _sw_pending + 1 ))
            elif _sw_booting "${P_PID[$_sw_i]}" "${P_CMD[$_sw_i]}"; then
                _sw_pending=$(( _sw_pending + 1 ))
            elif _sw_age_ms "${P_PID[$_sw_i]}"; [[ -n $REPLY ]] && (( REPLY >= SWARM_SETTLE_MS )); then
                _sw_alive[$_sw_i]=1
            elif [[ -z $REPLY ]] && (( _sw_now - ${_sw_seen[$_sw_i]:=$_sw_now} >= SWARM_SETTLE_MS )); then
                _sw_alive[$_sw_i]=1
            else
                _sw_pending=$(( _sw_pending + 1 ))
            fi
        done
    else
        _sw_pending=1
    fi
    (( _sw_pending == 0 )) && break
    _sw_now_ms
    if (( REPLY >= _sw_deadline )); then
        _sw_timed_out=true
        break
    fi
    sleep "$SWARM_POLL_INTERVAL_S"
done
_sw_step_end ready

# -- discovery: the coordinator registers the agents that are running now --
_sw_step_begin
if [[ $SWARM_COORD_ENABLED == 1 && $_sw_coord_installed == true && $_sw_server == true ]]; then
    # claudeswarm asks plain `tmux` (no -L): $TMUX tells that tmux which server to use.
    if _sw_sock=$(_sw_tmux display-message -p -t "=$SWARM_SESSION:" '#{socket_path},#{pid},0' 2>&1); then
        _sw_timeout=()
        command -v timeout >/dev/null 2>&1 && _sw_timeout=(timeout "$SWARM_DISCOVER_TIMEOUT_S")
        if _sw_out=$(cd -- "$SWARM_WORKDIR" && TMUX=$_sw_sock ${_sw_timeout[@]+"${_sw_timeout[@]}"} \
                claudeswarm discover-agents --json 2> "$SWARM_STATE_DIR/discover.err"); then
            if _sw_n=$(printf '%s' "$_sw_out" | python3 -c 'import json,sys; t=sys.stdin.read(); print(len(json.loads(t[t.index("{"):]).get("agents", [])))' 2>/dev/null); then
                _sw_coord_discovered=$_sw_n
            else
                _sw_coord_discovered=$(printf '%s\n' "$_sw_out" | grep -c '"pane_index"' || true)
            fi
        else
            _sw_last=$(tail -n 2 -- "$SWARM_STATE_DIR/discover.err" 2>/dev/null | tr '\n' ' ' || true)
            _sw_coord_fail "claudeswarm discover-agents failed: ${_sw_last:0:300}"
        fi
    else
        _sw_coord_fail "could not locate the tmux socket: $_sw_sock"
    fi
fi
_sw_step_end discover

# -- report --
_sw_panes=() _sw_ready=0 _sw_failed=0
for (( _sw_i = 0; _sw_i < SWARM_AGENTS; _sw_i++ )); do
    if [[ -z ${P_ID[$_sw_i]+x} ]]; then
        _sw_failed=$(( _sw_failed + 1 ))
        _sw_panes+=("{\"index\":$_sw_i,\"target\":null,\"pane_id\":null,\"pid\":null,\"alive\":false,\"dead\":false,\"exit_status\":null,\"exit_signal\":null,\"command\":null,\"restarts\":0}")
        continue
    fi
    _sw_alive_i=false
    if [[ -n ${_sw_alive[$_sw_i]+x} ]]; then
        _sw_alive_i=true
        _sw_ready=$(( _sw_ready + 1 ))
    else
        _sw_failed=$(( _sw_failed + 1 ))
        if [[ ${P_DEAD[$_sw_i]} == 1 ]]; then
            # Complete: a piped pane is marked dead only once tmux has read all its output.
            _sw_last_output "${P_ID[$_sw_i]}"
            if [[ -n ${P_SIGNAL[$_sw_i]} ]]; then _sw_how="signal ${P_SIGNAL[$_sw_i]}"; else _sw_how="status ${P_STATUS[$_sw_i]:-unknown}"; fi
            _sw_error agent "$_sw_i" "agent exited ($_sw_how): $REPLY"
        else
            _sw_error agent "$_sw_i" "agent did not start within the ready timeout"
        fi
    fi
    _sw_pane_json "$_sw_i" "$_sw_alive_i"
    _sw_panes+=("$REPLY")
done
_sw_json "$SWARM_SESSION"; _sw_s=$REPLY
_sw_json "$SWARM_SOCKET"; _sw_k=$REPLY
_sw_json "$SWARM_STATE_DIR"; _sw_d=$REPLY
_sw_steps=()
for _sw_n in "${!_sw_step[@]}"; do
    _sw_steps+=("\"$_sw_n\":$(( _sw_step[$_sw_n] / 1000 )).$(printf '%03d' $(( _sw_step[$_sw_n] % 1000 )))")
done
_sw_missing=()
for _sw_n in ${_sw_env_missing[@]+"${_sw_env_missing[@]}"}; do _sw_missing+=("\"$_sw_n\""); done
_sw_coord_enabled=false; [[ $SWARM_COORD_ENABLED == 1 ]] && _sw_coord_enabled=true
_sw_join ${_sw_panes[@]+"${_sw_panes[@]}"}; _sw_pj=$REPLY
_sw_join ${_sw_errors[@]+"${_sw_errors[@]}"}; _sw_ej=$REPLY
_sw_join ${_sw_steps[@]+"${_sw_steps[@]}"}; _sw_sj=$REPLY
_sw_join ${_sw_created[@]+"${_sw_created[@]}"}; _sw_cj=$REPLY
_sw_join ${_sw_removed[@]+"${_sw_removed[@]}"}; _sw_rj=$REPLY
_sw_join ${_sw_restarted[@]+"${_sw_restarted[@]}"}; _sw_xj=$REPLY
_sw_join ${_sw_missing[@]+"${_sw_missing[@]}"}; _sw_mj=$REPLY
_sw_list=()
for _sw_n in ${_sw_installed[@]+"${_sw_installed[@]}"}; do _sw_json "$_sw_n"; _sw_list+=("$REPLY"); done
_sw_join ${_sw_list[@]+"${_sw_list[@]}"}; _sw_ij=$REPLY
_sw_list=()
for _sw_n in ${_sw_agent_files[@]+"${_sw_agent_files[@]}"}; do [[ -n $_sw_n ]] && { _sw_json "$_sw_n"; _sw_list+=("$REPLY"); }; done
_sw_join ${_sw_list[@]+"${_sw_list[@]}"}; _sw_aj=$REPLY
_sw_wj=null
if [[ -n $SWARM_WS_REPO ]]; then
    _sw_json "$SWARM_WS_REPO"; _sw_wj="{\"repo\":$REPLY"
    _sw_json "$SWARM_WS_REF"; _sw_wj+=",\"ref\":$REPLY"
    _sw_json "$SWARM_WORKDIR"; _sw_wj+=",\"path\":$REPLY"
    if [[ -n $_sw_ws_commit ]]; then _sw_json "$_sw_ws_commit"; _sw_wj+=",\"commit\":$REPLY"; else _sw_wj+=',"commit":null'; fi
    if [[ -n $_sw_ws_error ]]; then _sw_json "$_sw_ws_error"; _sw_wj+=",\"error\":$REPLY"; else _sw_wj+=',"error":null'; fi
    _sw_wj+=",\"floating\":$_sw_ws_floating}"
fi
_sw_emit "{\"kind\":\"setup\",\"version\":1,\"session\":$_sw_s,\"socket\":$_sw_k,\"state_dir\":$_sw_d,\
\"server\":$_sw_server,\"agents\":{\"desired\":$SWARM_AGENTS,\"ready\":$_sw_ready,\"failed\":$_sw_failed},\
\"panes\":[$_sw_pj],\"created\":[$_sw_cj],\"removed\":[$_sw_rj],\"restarted\":[$_sw_xj],\
\"env_missing\":[$_sw_mj],\"timed_out\":$_sw_timed_out,\
\"coordinator\":{\"enabled\":$_sw_coord_enabled,\"installed\":$_sw_coord_installed,\"discovered\":$_sw_coord_discovered,\"error\":$_sw_coord_error},\
\"steps\":{$_sw_sj},\"errors\":[$_sw_ej],\"workspace\":$_sw_wj,\"mcp\":$_sw_mcp_report,\
\"installed\":[$_sw_ij],\"agent_config\":[$_sw_aj]}"
exit 0
