# ---- setup: converge the resource's tmux session to exactly $SWARM_AGENTS live agents ----
# Idempotent in both directions: a rerun keeps healthy agents (same pids), starts missing panes,
# removes surplus ones (scale down), restarts dead agents in place, and re-runs discovery.

unset -v TMUX TMUX_PANE   # never talk to a tmux server this script happens to run under

# -- secrets: handed over once, on stdin, never through the environment --
# The operator writes NAME NUL VALUE NUL pairs, then an empty NAME, and closes stdin (the backend's
# ``run(stdin=...)``). They land in variables of this shell that are never exported: the process's
# environment (/proc/PID/environ, envd's process list) holds none of them for as long as this script
# runs, and no child inherits one. Only the names this script expects are taken: agent env names
# (SWARM_ENV_NAMES) and script-only secrets (SWARM_SECRET_*). Values already in the environment (an
# older operator passed them as envs=) are still used, so an upgrade mid-flight converges.
if [[ ! -t 0 ]]; then
    _sw_want=" ${SWARM_ENV_NAMES[*]-} "
    while IFS= read -r -d '' _sw_k; do
        [[ -n $_sw_k ]] || break
        IFS= read -r -d '' _sw_v || true
        if [[ $_sw_k =~ ^SWARM_SECRET_[A-Z0-9_]+$ || ( $_sw_k =~ ^[A-Za-z_][A-Za-z0-9_]*$ && $_sw_want == *" $_sw_k "* ) ]]; then
            unset -v "$_sw_k"
            printf -v "$_sw_k" '%s' "$_sw_v"
        fi
    done
    unset -v _sw_k _sw_v _sw_want
fi
exec 0< /dev/null   # nothing started from here on holds the operator's end of the pipe

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
# The workspace credential's file (see the workspace step): one left by a run that was killed
# mid-clone goes now, and this run's goes when the script ends, however it ends.
_sw_pw_file=$SWARM_STATE_DIR/git-credential
rm -f -- "$_sw_pw_file"
trap 'rm -f -- "$_sw_pw_file"' EXIT
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
# Credentials: git asks a helper that prints the password from a 0600 file in the 0700 state
# directory, written by a builtin (no argv holds it) and removed right after this step (and by the
# EXIT trap). Neither git's nor this script's environment ever holds the value; the helper's text
# (on git's command line) holds a path only; nothing is written to .git/config or any credential
# store (-c credential.helper= clears configured helpers).
_sw_step_begin
_sw_blocked=false _sw_ws_commit='' _sw_ws_error='' _sw_ws_floating=false
if [[ -n $SWARM_WS_REPO && -n ${SWARM_SECRET_GIT_PASSWORD-} ]]; then
    printf '%s' "$SWARM_SECRET_GIT_PASSWORD" > "$_sw_pw_file"   # umask 077: 0600
fi
unset -v SWARM_SECRET_GIT_PASSWORD
_sw_ws_fail() { _sw_ws_error=$1; _sw_blocked=true; _sw_error workspace '' "$1"; }
_sw_workspace() {
    local dir=$SWARM_WORKDIR want='' out sha name tag_sha='' head_sha='' exact_sha='' origin current
    local cloned=$SWARM_STATE_DIR/workspace.cloned
    if ! command -v git >/dev/null 2>&1; then
        _sw_ws_fail "git is not installed in the sandbox (use a template that has it: swarm-operator template)"
        return 0
    fi
    # Cloned by an earlier run for this repo and ref: the agents own its HEAD since (their commits,
    # a branch they made); a rerun (self-heal, scale) never moves it back.
    if [[ -d $dir/.git && -f $cloned && "$(< "$cloned")" == "$SWARM_WS_REPO $SWARM_WS_REF "* \
            && "$(git -C "$dir" config --get remote.origin.url 2>/dev/null)" == "$SWARM_WS_REPO" ]]; then
        _sw_ws_commit=$(< "$cloned"); _sw_ws_commit=${_sw_ws_commit##* }
        return 0
    fi
    if [[ -n $SWARM_WS_START && ! -d $dir/.git ]]; then
        want=$SWARM_WS_START   # a new sandbox carries on from the commit pushed last (workspace.push)
    elif [[ $SWARM_WS_REF =~ ^[0-9a-f]{40}$ ]]; then
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
            printf '%s %s %s' "$SWARM_WS_REPO" "$SWARM_WS_REF" "$current" > "$cloned"
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
    [[ $SWARM_WS_REF =~ ^[0-9a-f]{40}$ || $want == "$SWARM_WS_START" ]] \
        || printf '%s %s %s' "$SWARM_WS_REPO" "$SWARM_WS_REF" "$want" > "$SWARM_STATE_DIR/workspace.resolved"
    printf '%s %s %s' "$SWARM_WS_REPO" "$SWARM_WS_REF" "$_sw_ws_commit" > "$cloned"
}
[[ -n $SWARM_WS_REPO ]] && _sw_workspace
rm -f -- "$_sw_pw_file"
_sw_step_end workspace

# -- mcp: E2B's MCP gateway, started the way E2B starts it --
# e2b SDK sandbox_async/main.py (Sandbox.create(mcp=...)): `mcp-gateway --config '<json>'`, run as root
# (user="root") in the foreground with GATEWAY_ACCESS_TOKEN in its environment; the gateway daemonises
# and serves MCP on port 50005 (sandbox/main.py: mcp_port), path /mcp. No other way to configure it
# exists in any E2B repository. This step runs that command, with one difference: the JSON (it holds
# the MCP secrets) reaches the command through the environment of a constant command body, so the
# rendered script, the request that carries it and every log hold variable names only. The JSON is
# then on the gateway's own argv inside the sandbox, as E2B's way requires: readable by the sandbox's
# own processes. That protects nothing less than before: the agents in this sandbox can become root
# (e2b-dev/infra .../finalize/configure.sh: `user` has NOPASSWD sudo), so nothing inside one sandbox
# is hidden from its agents anyway. Only a sha256 of the JSON is kept on disk (to notice a change).
_sw_step_begin
_sw_mcp_report=null
# The secrets reach it on its stdin (NAME NUL VALUE NUL ..., written by the builtin printf), not
# through its environment: they are variables of this script, never exported.
_sw_mcp_build='
import json, os, sys
spec = json.loads(os.environ["SWARM_MCP"])
config = spec["config"]
parts = sys.stdin.buffer.read().decode("utf-8", "surrogateescape").split("\0")
values = dict(zip(parts[0::2], parts[1::2]))
for server, field, env in spec.get("secrets", []):
    if env not in values:
        sys.exit("the value for %s.%s was not provided" % (server, field))
    config.setdefault(server, {})[field] = values[env]
for server in spec.get("workspace", []):
    config.setdefault(server, {})["paths"] = [os.environ["SWARM_WORKDIR"]]
json.dump(config, sys.stdout, sort_keys=True)
'
_sw_gw_pids() {
    # _sw_gw_pids NAME -> REPLY_PIDS: processes running a gateway named NAME with --config on our
    # port (`--port N` when it is not E2B's, none when it is). Read from /proc, which shows every
    # user's argv: the gateway runs as root, this script as the sandbox user.
    local d i port
    local -a argv
    REPLY_PIDS=()
    for d in /proc/[0-9]*; do
        mapfile -d '' -t argv < "$d/cmdline" 2>/dev/null || continue
        for (( i = 0; i + 1 < ${#argv[@]}; i++ )); do
            [[ ${argv[i]##*/} == "$1" && ${argv[i+1]} == --config ]] || continue
            port=$SWARM_MCP_E2B_PORT
            for (( ; i + 1 < ${#argv[@]}; i++ )); do
                [[ ${argv[i]} == --port ]] && port=${argv[i+1]}
            done
            [[ $port == "$SWARM_MCP_PORT" ]] && REPLY_PIDS+=("${d#/proc/}")
            break
        done
    done
}
_sw_redact=()
_sw_gw_log_tail() {
    # The last line of the gateway's log, for a report, with every MCP secret and the access token
    # masked: a gateway that fails may print its argv, which holds the configuration (the JSON, as
    # it is, and each value JSON-escaped as it appears inside it).
    local line v
    line=$(tail -n 1 -- "$_sw_mcp_dir/gateway.log" 2>/dev/null | cut -c1-400) || line=''
    for v in ${_sw_redact[@]+"${_sw_redact[@]}"}; do
        [[ -n $v ]] || continue
        line=${line//"$v"/***}
        _sw_json "$v"; v=${REPLY:1:${#REPLY}-2}
        line=${line//"$v"/***}
    done
    REPLY=${line:0:200}
}
if [[ -n $SWARM_MCP && $_sw_blocked == false ]]; then
    _sw_mcp_dir=$SWARM_STATE_DIR/mcp-gateway
    mkdir -p -- "$_sw_mcp_dir" && chmod 700 -- "$_sw_mcp_dir"
    [[ -s $_sw_mcp_dir/token ]] || python3 -c 'import secrets; print(secrets.token_hex(24))' > "$_sw_mcp_dir/token"
    rm -f -- "$_sw_mcp_dir/config.json"   # an older script kept the JSON in a file: nothing reads it now
    _sw_started=false _sw_gave_up=false _sw_checked=false
    _sw_restarts=$(cat -- "$_sw_mcp_dir/restarts" 2>/dev/null || true)
    [[ $_sw_restarts =~ ^[0-9]+$ ]] || _sw_restarts=0
    _sw_gw=$(command -v "$SWARM_MCP_GATEWAY" 2>/dev/null || true)
    # As root, as E2B's SDK runs it (user="root"); sudo keeps exactly these two variables.
    _sw_gw_root=()
    (( EUID == 0 )) || _sw_gw_root=(sudo -n --preserve-env=SWARM_MCP_CONFIG,GATEWAY_ACCESS_TOKEN)
    _sw_msg=''
    _sw_secrets_out() { local n; for n in $(compgen -v SWARM_SECRET_ || true); do printf '%s\0%s\0' "$n" "${!n}"; done; }
    if ! _sw_cfg=$(_sw_secrets_out | SWARM_MCP=$SWARM_MCP SWARM_WORKDIR=$SWARM_WORKDIR python3 -c "$_sw_mcp_build" 2> "$_sw_mcp_dir/build.err"); then
        _sw_msg="cannot build the MCP gateway configuration: $(tail -n 1 -- "$_sw_mcp_dir/build.err")"
    elif [[ -z $_sw_gw ]]; then
        _sw_msg="$SWARM_MCP_GATEWAY is not installed in the sandbox (use E2B's mcp-gateway template: swarm-operator template --from-template mcp-gateway)"
    fi
    # Script memory only (never exported, never written): what a report must never show.
    _sw_redact=("$(< "$_sw_mcp_dir/token")")
    for _sw_n in $(compgen -v SWARM_SECRET_ || true); do _sw_redact+=("${!_sw_n}"); done
    if [[ -n $_sw_msg ]]; then
        _sw_error mcp '' "$_sw_msg"
        _sw_json "$_sw_msg"
        _sw_mcp_report="{\"gateway\":false,\"servers\":null,\"restarts\":$_sw_restarts,\"error\":$REPLY}"
    else
        _sw_hash=$(printf '%s' "$_sw_cfg" | sha256sum); _sw_hash=${_sw_hash%% *}
        _sw_same=false
        [[ $(cat -- "$_sw_mcp_dir/config.sha256" 2>/dev/null || true) == "$_sw_hash" ]] && _sw_same=true
        _sw_out=''
        if [[ $_sw_same == true ]]; then
            # Started before with exactly this configuration: one MCP exchange says whether it still serves.
            _sw_now_ms
            _sw_out=$(_sw_mcp_check "$_sw_mcp_dir/token" "$(( REPLY / 1000 ))" 2>&1 || true)
        fi
        if [[ $_sw_out == '{"gateway": true'* ]]; then
            _sw_checked=true   # serving with this configuration: left alone
        else
            # A gateway that stopped serving under an unchanged configuration is restarted within the
            # same budget as an agent (healthCheck.maxRestarts); a new configuration starts the count afresh.
            if [[ $_sw_same == false ]]; then
                _sw_restarts=0
            elif (( SWARM_MAX_RESTARTS >= 0 && _sw_restarts >= SWARM_MAX_RESTARTS )); then
                _sw_gave_up=true
            else
                _sw_restarts=$(( _sw_restarts + 1 ))
            fi
            printf '%s' "$_sw_restarts" > "$_sw_mcp_dir/restarts"
            if [[ $_sw_gave_up == true ]]; then
                _sw_gw_log_tail
                _sw_msg="the MCP gateway died again with its restarts (healthCheck.maxRestarts) spent; not restarted. Its log ends: $REPLY"
                _sw_json "$_sw_msg"
                # Reported, not an error: the agents keep running; health and status.mcp say it.
                _sw_mcp_report="{\"gateway\":false,\"servers\":null,\"restarts\":$_sw_restarts,\"error\":$REPLY}"
            else
                # One gateway per port: an old one (another configuration, or hung) goes first, as root.
                _sw_gw_pids "${_sw_gw##*/}"
                if (( ${#REPLY_PIDS[@]} )); then
                    ${_sw_gw_root[@]+"${_sw_gw_root[@]}"} /bin/sh -c 'kill "$@"' sh "${REPLY_PIDS[@]}" 2>/dev/null || true
                    for (( _sw_i = 0; _sw_i < 40; _sw_i++ )); do
                        _sw_gw_pids "${_sw_gw##*/}"
                        (( ${#REPLY_PIDS[@]} )) || break
                        sleep 0.05
                    done
                fi
                _sw_port=()
                (( SWARM_MCP_PORT == SWARM_MCP_E2B_PORT )) || _sw_port=(--port "$SWARM_MCP_PORT")
                # E2B's gateway daemonises and its starter returns; one that stays in the foreground
                # keeps running here. Either way this script does not wait: the MCP check below decides.
                ( cd -- "$_sw_mcp_dir" && SWARM_MCP_CONFIG=$_sw_cfg GATEWAY_ACCESS_TOKEN=$(< "$_sw_mcp_dir/token") \
                    exec setsid ${_sw_gw_root[@]+"${_sw_gw_root[@]}"} \
                    /bin/sh -c 'exec "$0" --config "$SWARM_MCP_CONFIG" "$@"' "$_sw_gw" ${_sw_port[@]+"${_sw_port[@]}"} \
                    < /dev/null > "$_sw_mcp_dir/gateway.log" 2>&1 9>&- ) &
                printf '%s' "$_sw_hash" > "$_sw_mcp_dir/config.sha256"
                _sw_started=true
            fi
        fi
    fi
    unset -v _sw_cfg
    # No secret outlives this point in the script's environment (the gateway has its own copy).
    for _sw_n in $(compgen -v SWARM_SECRET_ || true); do unset -v "$_sw_n"; done
    if [[ $_sw_checked == true ]]; then
        _sw_mcp_report="${_sw_out%$'\n'}"
        _sw_mcp_report="${_sw_mcp_report%\}},\"started\":false,\"restarts\":$_sw_restarts}"
    elif [[ $_sw_started == true ]]; then
        _sw_now_ms
        _sw_out=$(_sw_mcp_check "$_sw_mcp_dir/token" "$(( REPLY / 1000 + SWARM_MCP_START_TIMEOUT_S ))" 2>&1 || true)
        if [[ $_sw_out == '{"gateway": true'* ]]; then
            _sw_mcp_report="${_sw_out%$'\n'}"
            _sw_mcp_report="${_sw_mcp_report%\}},\"started\":true,\"restarts\":$_sw_restarts}"
            _sw_gw_pids "${_sw_gw##*/}"   # the daemon's pid, for the record (the stopping goes by /proc)
            (( ${#REPLY_PIDS[@]} )) && printf '%s' "${REPLY_PIDS[0]}" > "$_sw_mcp_dir/pid"
        elif [[ $_sw_out == '{"gateway": false'* ]]; then
            _sw_mcp_report="${_sw_out%$'\n'}"
            _sw_mcp_report="${_sw_mcp_report%\}},\"restarts\":$_sw_restarts}"
            _sw_e=$(printf '%s' "$_sw_out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["error"])' 2>/dev/null || true)
            _sw_gw_log_tail
            _sw_error mcp '' "MCP gateway check failed: ${_sw_e:-$_sw_out}; its log ends: $REPLY"
        else
            _sw_error mcp '' "MCP gateway check failed: ${_sw_out:$(( ${#_sw_out} > 300 ? ${#_sw_out} - 300 : 0 ))}"
        fi
    fi
fi
for _sw_n in $(compgen -v SWARM_SECRET_ || true); do unset -v "$_sw_n"; done
_sw_redact=()
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

# -- provision: install what the template lacks, once per sandbox --
# Any Debian-based template whose user has passwordless sudo works on the first apply (E2B's do:
# e2b-dev/infra packages/orchestrator/pkg/template/build/phases/finalize/configure.sh gives `user`
# NOPASSWD: ALL). E2B's `base` (e2b-dev/E2B templates/base/e2b.Dockerfile) has git, curl, Node and npm
# but no tmux and no agent CLI. Everything is checked first, so a prebuilt template (swarm-operator
# template --build) and every rerun install nothing, and then no provision step is reported at all.
# Each installer is bounded by `timeout` (its process group is sent SIGTERM, which sudo passes on to
# the installer, and SIGKILL 10 s later); a failure is a reported error naming what failed and its
# log, never a hang. It runs here, after every secret has left this script's environment (env,
# workspace and mcp unset them), so no installer (nor a package's install script) inherits one; and
# not at all when the workspace blocked the agents.
_sw_step_begin
_sw_provisioned=false
_sw_prov_log=$SWARM_STATE_DIR/provision.log
# As root: directly when this script already is root, else through sudo without a prompt (-n: a
# sudo that wants a password fails at once instead of waiting for one). An argv prefix, not a
# function, so that `timeout` can run it.
_sw_as_root=()
(( EUID == 0 )) || _sw_as_root=(sudo -n)
_sw_installer() {
    # _sw_installer WHAT CMD... -- one bounded installer, its output appended to the provision log.
    local what=$1 rc=0
    shift
    _sw_prov_why=''
    _sw_provisioned=true
    printf '\n## %s: %s\n' "$what" "$*" >> "$_sw_prov_log"
    timeout -k 10 "$SWARM_INSTALL_TIMEOUT_S" "$@" < /dev/null >> "$_sw_prov_log" 2>&1 9>&- || rc=$?
    (( rc == 0 )) && return 0
    if (( rc == 124 || rc == 137 )); then
        _sw_prov_why="timed out after ${SWARM_INSTALL_TIMEOUT_S}s"
    else
        _sw_prov_why="exit status $rc"
    fi
    return 1
}
_sw_prov_fail() {
    # _sw_prov_fail WHAT -- the reported error: what, why, and the end of the log.
    local last
    last=$(tail -n 3 -- "$_sw_prov_log" 2>/dev/null | tr '\n' ' ' || true)
    _sw_error provision '' "installing $1 failed ($_sw_prov_why; see $_sw_prov_log): ${last:0:300}"
}
_sw_can_root() {
    (( EUID == 0 )) && return 0
    command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1 9>&-
}
_sw_coord_fail() { _sw_json "$1"; _sw_coord_error=$REPLY; _sw_error coordinator '' "$1"; }
# The template's own python3, never the coordinator venv's (its bin leads PATH since prepare).
_sw_py=$(PATH=${PATH#"$SWARM_COORD_BIN:"} && command -v -- "$SWARM_PYTHON" || printf '%s' "$SWARM_PYTHON")
_sw_npm_pack() {
    # _sw_npm_pack PACKAGE INTEGRITY DIR -> REPLY: PACKAGE's tarball, packed (`npm pack`, as the
    # sandbox user, into DIR, a fresh directory in the 0700 state directory) and checked against
    # INTEGRITY (the registry's dist.integrity, recorded in the operator) before anything installs
    # it. sha512sum, base64 and od are coreutils: no other tool is assumed.
    local want got
    local -a found
    mkdir -p -- "$3"
    _sw_installer "$1 (npm pack)" npm pack --silent --pack-destination "$3" "$1" || return 1
    found=("$3"/*.tgz)
    if (( ${#found[@]} != 1 )) || [[ ! -f ${found[0]} ]]; then
        _sw_prov_why="npm pack left no single tarball in $3"
        return 1
    fi
    got=$(sha512sum < "${found[0]}"); got=${got%% *}
    want=$(printf '%s' "${2#sha512-}" | base64 -d 2>/dev/null | od -An -v -tx1 | tr -d ' \n')
    if [[ $2 != sha512-* || -z $want || $got != "$want" ]]; then
        _sw_prov_why="integrity mismatch: the packed $1 is not the pinned $2; not installed"
        return 1
    fi
    REPLY=${found[0]}
}
_sw_npm_verified() {
    # _sw_npm_verified -> REPLY_ARGV: the npm install arguments for the pinned agent CLI, every
    # tarball verified: the package itself and, when the operator pins its native per-platform
    # package (SWARM_AGENT_CLI_NATIVE: uname -m, package, integrity, ...), the one for this
    # machine, installed beside it with --omit=optional so npm fetches nothing unpinned.
    local dir=$SWARM_STATE_DIR/npm-pack machine i
    REPLY_ARGV=()
    rm -rf -- "$dir"
    if ! _sw_npm_pack "$SWARM_AGENT_CLI" "$SWARM_AGENT_CLI_INTEGRITY" "$dir/cli"; then
        rm -rf -- "$dir"
        return 1
    fi
    REPLY_ARGV=("$REPLY")
    (( ${#SWARM_AGENT_CLI_NATIVE[@]} )) || return 0
    machine=$(uname -m)
    for (( i = 0; i + 2 < ${#SWARM_AGENT_CLI_NATIVE[@]}; i += 3 )); do
        [[ ${SWARM_AGENT_CLI_NATIVE[i]} == "$machine" ]] || continue
        if ! _sw_npm_pack "${SWARM_AGENT_CLI_NATIVE[i+1]}" "${SWARM_AGENT_CLI_NATIVE[i+2]}" "$dir/native"; then
            rm -rf -- "$dir"
            return 1
        fi
        REPLY_ARGV=(--omit=optional "${REPLY_ARGV[0]}" "$REPLY")
        return 0
    done
    _sw_prov_why="no pinned native package of $SWARM_AGENT_CLI for this machine ($machine)"
    rm -rf -- "$dir"
    return 1
}
_sw_coord_pip() {
    # _sw_coord_pip INSTALLER... -- the coordinator into its venv with INSTALLER: the venv's pip, or
    # uv's pip aimed at the venv (a uv-managed Python); both take the options below with pip's
    # meaning (astral-sh/uv crates/uv-settings/src/settings.rs, PipOptions: require_hashes, no
    # build isolation, only-binary; uv's hash-checking mode refuses git requirements, so the commit
    # pin is a second call, as with pip). With a lock (the default pin's, shipped with the
    # operator): first its dependencies, every one a wheel whose sha256 the lock names
    # (--require-hashes also refuses a dependency the lock lacks), then the coordinator itself from
    # its pinned git commit (the commit id is its content hash), --no-deps, built by the locked
    # backend (--no-build-isolation: nothing unhashed is fetched to build it). Without a lock (a
    # custom coordinator.install) the installer takes the requirement and its dependencies as it
    # resolves them.
    local -a pip=("$@")
    if [[ -z $SWARM_COORD_LOCK ]]; then
        _sw_installer "coordinator" "${pip[@]}" -- "$SWARM_COORD_INSTALL"
        return
    fi
    printf '%s\n' "$SWARM_COORD_LOCK" > "$SWARM_COORD_VENV/coordinator.lock"
    _sw_coord_step="its dependencies from the hashed lock $SWARM_COORD_VENV/coordinator.lock"
    _sw_installer "coordinator dependencies (hashed lock)" "${pip[@]}" --require-hashes --only-binary=:all: \
        -r "$SWARM_COORD_VENV/coordinator.lock" || return 1
    _sw_coord_step="the coordinator at its pinned commit"
    _sw_installer "coordinator" "${pip[@]}" --no-deps --no-build-isolation -- "$SWARM_COORD_INSTALL"
}
if [[ $_sw_blocked == false ]]; then
    _sw_apt=()
    command -v tmux >/dev/null 2>&1 || _sw_apt+=(tmux)
    _sw_agent_cli_missing=false
    if [[ -n $SWARM_AGENT_CLI ]] && ! command -v "$SWARM_COMMAND" >/dev/null 2>&1; then
        _sw_agent_cli_missing=true
    fi
    _sw_coord_want=false
    if [[ $SWARM_COORD_ENABLED == 1 && $SWARM_COORD_INSTALL != preinstalled ]]; then
        _sw_marker=$SWARM_COORD_VENV/.swarm-requirement
        if [[ -x $SWARM_COORD_BIN/claudeswarm && -f $_sw_marker && "$(< "$_sw_marker")" == "$SWARM_COORD_INSTALL" ]]; then
            _sw_coord_installed=true   # already satisfied: exactly this requirement was installed
        elif [[ -f $HOME/.swarm-template/coordinator && "$(< "$HOME/.swarm-template/coordinator")" == "$SWARM_COORD_INSTALL" ]] \
                && command -v claudeswarm >/dev/null 2>&1; then
            _sw_coord_installed=true   # the prebuilt template (swarm-operator template) ships this exact pin
        else
            _sw_coord_want=true
            # The coordinator needs Python >= SWARM_COORD_PYTHON; E2B's base has 3.11.6 (it builds on
            # python:3.11). An older python3 gets a managed Python from uv for the venv instead.
            _sw_coord_uv=false
            if ! "$_sw_py" -c 'import sys; sys.exit(sys.version_info[:2] < tuple(map(int, sys.argv[1].split("."))))' \
                    "$SWARM_COORD_PYTHON" >/dev/null 2>&1; then
                _sw_coord_uv=true
            # Debian's own python3 has no venv module without python3-venv (E2B's base builds on
            # python:3.11, which has it); only then is it added to the apt install.
            elif [[ ! -x $SWARM_COORD_VENV/bin/python ]] && ! "$_sw_py" -c 'import ensurepip, venv' >/dev/null 2>&1; then
                _sw_apt+=(python3-venv)
            fi
        fi
    fi
    if (( ${#_sw_apt[@]} )) || [[ $_sw_agent_cli_missing == true ]]; then
        if ! command -v timeout >/dev/null 2>&1; then
            _sw_error provision '' "cannot install ${_sw_apt[*]-} $SWARM_AGENT_CLI: timeout (coreutils) is missing, so an installer could not be bounded"
            _sw_apt=() _sw_agent_cli_missing=false
        elif ! _sw_can_root; then
            _sw_error provision '' "cannot install ${_sw_apt[*]-} $SWARM_AGENT_CLI: not root and no passwordless sudo (use a template that has them: swarm-operator template --build)"
            _sw_apt=() _sw_agent_cli_missing=false
        fi
    fi
    if (( ${#_sw_apt[@]} )); then
        if ! command -v apt-get >/dev/null 2>&1; then
            _sw_error provision '' "cannot install ${_sw_apt[*]}: apt-get is missing (not a Debian-based template; use swarm-operator template --build)"
        elif ! _sw_installer "apt-get update" ${_sw_as_root[@]+"${_sw_as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update; then
            _sw_prov_fail "${_sw_apt[*]} (apt-get update)"
        elif ! _sw_installer "apt-get install" ${_sw_as_root[@]+"${_sw_as_root[@]}"} env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y --no-install-recommends "${_sw_apt[@]}"; then
            _sw_prov_fail "${_sw_apt[*]}"
        else
            hash -r
            _sw_installed+=("${_sw_apt[@]}")
            command -v tmux >/dev/null 2>&1 || _sw_error provision '' "apt-get installed tmux, but tmux is not on PATH"
        fi
    fi
    if [[ $_sw_agent_cli_missing == true ]]; then
        if ! command -v npm >/dev/null 2>&1; then
            _sw_error provision '' "cannot install $SWARM_AGENT_CLI: npm is missing (use a template with Node.js, or swarm-operator template --build)"
        elif [[ -n $SWARM_AGENT_CLI_INTEGRITY ]] && ! _sw_npm_verified; then
            _sw_prov_fail "$SWARM_AGENT_CLI"
        elif [[ -n $SWARM_AGENT_CLI_INTEGRITY ]] \
                && ! _sw_installer "$SWARM_AGENT_CLI" ${_sw_as_root[@]+"${_sw_as_root[@]}"} npm install -g "${REPLY_ARGV[@]}"; then
            _sw_prov_fail "$SWARM_AGENT_CLI"
        elif [[ -z $SWARM_AGENT_CLI_INTEGRITY ]] \
                && ! _sw_installer "$SWARM_AGENT_CLI" ${_sw_as_root[@]+"${_sw_as_root[@]}"} npm install -g "$SWARM_AGENT_CLI"; then
            _sw_prov_fail "$SWARM_AGENT_CLI"
        else
            rm -rf -- "$SWARM_STATE_DIR/npm-pack"
            hash -r
            _sw_installed+=("$SWARM_AGENT_CLI")
            command -v "$SWARM_COMMAND" >/dev/null 2>&1 \
                || _sw_error provision '' "npm installed $SWARM_AGENT_CLI, but $SWARM_COMMAND is not on PATH"
        fi
    fi
    if [[ $SWARM_COORD_ENABLED == 1 && $SWARM_COORD_INSTALL == preinstalled ]]; then
        if command -v claudeswarm >/dev/null 2>&1; then
            _sw_coord_installed=true
        else
            _sw_coord_fail 'coordinator is "preinstalled" but claudeswarm is not on PATH'
        fi
    elif [[ $_sw_coord_want == true ]]; then
        # Into a venv of its own, as the sandbox user. "--" ends pip's options: a requirement can never
        # be read as a flag (--index-url=...).
        _sw_prov_why='' _sw_coord_step=''
        if ! command -v timeout >/dev/null 2>&1; then
            _sw_coord_fail "cannot install the coordinator: timeout (coreutils) is missing, so pip could not be bounded"
        elif [[ $_sw_coord_uv == true ]]; then
            # uv at its pin into the user's site (no root needed), then a venv on a Python uv manages
            # (downloaded once into ~/.local/share/uv), then the coordinator into it. uv reads its
            # own index variable: a pip mirror the template configures (PIP_INDEX_URL) serves uv too,
            # exported only around these calls (never to the agents, never in an argv). A Debian
            # python3 is "externally managed" (PEP 668) and refuses even --user installs unless told
            # (PIP_BREAK_SYSTEM_PACKAGES, which older pips ignore): --user touches only ~/.local.
            _sw_uv_have=$("$_sw_py" -m uv --version 2>/dev/null || true)
            _sw_uv_index=false
            if [[ -n ${PIP_INDEX_URL-} && -z ${UV_DEFAULT_INDEX-} && -z ${UV_INDEX_URL-} ]]; then
                export UV_DEFAULT_INDEX=$PIP_INDEX_URL
                _sw_uv_index=true
            fi
            if { [[ "$_sw_uv_have " == "uv ${SWARM_UV_PIN#uv==} "* ]] \
                        || { _sw_installer "uv" env PIP_BREAK_SYSTEM_PACKAGES=1 "$_sw_py" -m pip install --user --disable-pip-version-check \
                                --no-input --quiet -- "$SWARM_UV_PIN" && _sw_installed+=("$SWARM_UV_PIN"); }; } \
                    && { [[ -x $SWARM_COORD_VENV/bin/python ]] \
                        || _sw_installer "coordinator python" "$_sw_py" -m uv venv --quiet \
                            --python "$SWARM_COORD_PYTHON" -- "$SWARM_COORD_VENV"; } \
                    && _sw_coord_pip "$_sw_py" -m uv pip install --quiet --python "$SWARM_COORD_VENV/bin/python" \
                    && [[ -x $SWARM_COORD_BIN/claudeswarm ]]; then
                printf '%s' "$SWARM_COORD_INSTALL" > "$_sw_marker"
                _sw_coord_installed=true
                _sw_installed+=("$SWARM_COORD_INSTALL")
            else
                [[ -x $SWARM_COORD_BIN/claudeswarm ]] || _sw_prov_why=${_sw_prov_why:-"no claudeswarm in $SWARM_COORD_BIN afterwards"}
                _sw_last=$(tail -n 3 -- "$_sw_prov_log" 2>/dev/null | tr '\n' ' ' || true)
                _sw_coord_fail "installing the coordinator failed (with uv: python3 is older than $SWARM_COORD_PYTHON): $SWARM_COORD_INSTALL (${_sw_coord_step:+$_sw_coord_step: }$_sw_prov_why; see $_sw_prov_log): ${_sw_last:0:300}"
            fi
            if [[ $_sw_uv_index == true ]]; then unset UV_DEFAULT_INDEX; fi
        elif { [[ -x $SWARM_COORD_VENV/bin/python ]] \
                    || _sw_installer "coordinator venv" "$_sw_py" -m venv -- "$SWARM_COORD_VENV"; } \
                && _sw_coord_pip "$SWARM_COORD_VENV/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
                && [[ -x $SWARM_COORD_BIN/claudeswarm ]]; then
            printf '%s' "$SWARM_COORD_INSTALL" > "$_sw_marker"
            _sw_coord_installed=true
            _sw_installed+=("$SWARM_COORD_INSTALL")
        else
            [[ -x $SWARM_COORD_BIN/claudeswarm ]] || _sw_prov_why=${_sw_prov_why:-"no claudeswarm in $SWARM_COORD_BIN afterwards"}
            _sw_last=$(tail -n 3 -- "$_sw_prov_log" 2>/dev/null | tr '\n' ' ' || true)
            _sw_coord_fail "installing the coordinator failed: $SWARM_COORD_INSTALL (${_sw_coord_step:+$_sw_coord_step: }$_sw_prov_why; see $_sw_prov_log): ${_sw_last:0:300}"
        fi
    fi
fi
if [[ $_sw_provisioned == true ]]; then _sw_step_end provision; fi

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
