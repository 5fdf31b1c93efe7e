# ---- setup: converge the resource's tmux session to exactly $SWARM_AGENTS live agents ----
# Idempotent in both directions: a rerun keeps healthy agents (same pids), starts missing panes,
# removes surplus ones (scale down), restarts dead agents in place, and re-runs discovery.

unset -v TMUX TMUX_PANE   # never talk to a tmux server this script happens to run under

declare -A _sw_step=()
_sw_step_begin() { _sw_now_ms; _sw_t0=$REPLY; }
_sw_step_end() { _sw_now_ms; _sw_step[$1]=$(( REPLY - _sw_t0 )); }

_sw_created=() _sw_removed=() _sw_restarted=() _sw_env_missing=()
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
printf '%s\n' 'set -g remain-on-exit on' 'set -g history-limit 5000' 'set -g exit-empty on' \
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
    _sw_tmux set-option -p -t "$1" @swarm_agent "$2" \; set-option -p -t "$1" @swarm_restarts "${3:-0}"
}

if _sw_tmux has-session -t "=$SWARM_SESSION" 2>/dev/null; then
    _sw_server=true
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
            else
                _sw_last=$(tail -n 3 -- "$_sw_log" 2>/dev/null | tr '\n' ' ' || true)
                _sw_coord_fail "installing the coordinator failed (see $_sw_log): ${_sw_last:0:300}"
            fi
        fi
    fi
fi
_sw_step_end coordinator_install

# -- ready: poll (bounded) until every agent is alive (exec'd, pane not dead, for settle time) or dead --
# An agent counts as alive once it has run for SWARM_SETTLE_MS since first seen exec'd: an agent
# that crashes at once (bad args, missing key) is then reported dead rather than ready.
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
            elif (( _sw_now - ${_sw_seen[$_sw_i]:=$_sw_now} >= SWARM_SETTLE_MS )); then
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
            _sw_last_output "${P_ID[$_sw_i]}"
            if [[ -z $REPLY ]]; then
                # tmux may reap the agent before it has read the agent's last output: look again once.
                sleep "$SWARM_POLL_INTERVAL_S"
                _sw_last_output "${P_ID[$_sw_i]}"
            fi
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
_sw_emit "{\"kind\":\"setup\",\"version\":1,\"session\":$_sw_s,\"socket\":$_sw_k,\"state_dir\":$_sw_d,\
\"server\":$_sw_server,\"agents\":{\"desired\":$SWARM_AGENTS,\"ready\":$_sw_ready,\"failed\":$_sw_failed},\
\"panes\":[$_sw_pj],\"created\":[$_sw_cj],\"removed\":[$_sw_rj],\"restarted\":[$_sw_xj],\
\"env_missing\":[$_sw_mj],\"timed_out\":$_sw_timed_out,\
\"coordinator\":{\"enabled\":$_sw_coord_enabled,\"installed\":$_sw_coord_installed,\"discovered\":$_sw_coord_discovered,\"error\":$_sw_coord_error},\
\"steps\":{$_sw_sj},\"errors\":[$_sw_ej]}"
exit 0
