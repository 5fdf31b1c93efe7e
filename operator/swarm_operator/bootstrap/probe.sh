# ---- probe: one read-only look at the agents, for health checks ----
unset -v TMUX TMUX_PANE
_sw_abs "$SWARM_STATE_DIR"; SWARM_STATE_DIR=$REPLY
_sw_abs "$SWARM_WORKDIR"; SWARM_WORKDIR=$REPLY
SWARM_TMUX_CONF=/dev/null   # never start a server from a probe; an absent one is the answer
_sw_server=false _sw_panes=() _sw_alive=0 _sw_dead=0 _sw_missing=()
if _sw_tmux has-session -t "=$SWARM_SESSION" 2>/dev/null && _sw_list_panes; then
    _sw_server=true
fi
for (( _sw_i = 0; _sw_i < SWARM_AGENTS; _sw_i++ )); do
    if [[ -z ${P_ID[$_sw_i]+x} ]]; then
        _sw_missing+=("$_sw_i")
        continue
    fi
    _sw_a=false _sw_d=false
    if [[ ${P_DEAD[$_sw_i]} == 1 ]]; then
        _sw_d=true; _sw_dead=$(( _sw_dead + 1 ))
    elif ! _sw_booting "${P_PID[$_sw_i]}" "${P_CMD[$_sw_i]}"; then
        _sw_a=true; _sw_alive=$(( _sw_alive + 1 ))
    fi
    _sw_pane_json "$_sw_i" "$_sw_a"
    _sw_panes+=("$REPLY")
done
# Panes beyond the desired count (a scale-down not yet applied) are reported as extra.
_sw_extra=$(( ${#EXTRA_IDS[@]} ))
for _sw_i in "${!P_ID[@]}"; do (( _sw_i >= SWARM_AGENTS )) && _sw_extra=$(( _sw_extra + 1 )); done
_sw_registry=null
if [[ $SWARM_COORD_ENABLED == 1 ]]; then
    _sw_reg=$SWARM_WORKDIR/ACTIVE_AGENTS.json
    if [[ -f $_sw_reg ]]; then
        _sw_n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("agents", [])))' "$_sw_reg" 2>/dev/null \
            || grep -c '"pane_index"' -- "$_sw_reg" || true)
        [[ $_sw_n =~ ^[0-9]+$ ]] || _sw_n=null
        _sw_m=$(stat -c %Y -- "$_sw_reg" 2>/dev/null || echo null)
        [[ $_sw_m =~ ^[0-9]+$ ]] || _sw_m=null
        _sw_json "$_sw_reg"
        _sw_registry="{\"path\":$REPLY,\"agents\":$_sw_n,\"mtime\":$_sw_m}"
    else
        _sw_json "$_sw_reg"
        _sw_registry="{\"path\":$REPLY,\"agents\":null,\"mtime\":null}"
    fi
fi
# The MCP gateway, when configured: one exchange, a short deadline (a probe never starts it).
_sw_mcp=null
if [[ $SWARM_MCP_ON == 1 ]]; then
    _sw_tok=$SWARM_STATE_DIR/mcp-gateway/token
    if [[ -s $_sw_tok ]]; then
        _sw_now_ms
        _sw_out=$(_sw_mcp_check "$_sw_tok" "$(( REPLY / 1000 + 3 ))" 2>/dev/null || true)
        _sw_r=$(cat -- "$SWARM_STATE_DIR/mcp-gateway/restarts" 2>/dev/null || true)
        [[ $_sw_r =~ ^[0-9]+$ ]] || _sw_r=0
        [[ $_sw_out == '{"gateway": '* ]] && _sw_mcp="${_sw_out%\}*},\"restarts\":$_sw_r}"
    else
        _sw_mcp='{"gateway":false,"servers":null,"error":"the MCP gateway was never started in this sandbox"}'
    fi
fi
# Last output of any agent window (tmux stamps window_activity on pane output) and the sandbox's
# clock, for spec.idle: one tmux call, ages computed against the sandbox's own clock.
_sw_act=null
if [[ $_sw_server == true ]]; then
    while read -r _sw_w; do
        if [[ $_sw_w =~ ^[0-9]+$ ]] && { [[ $_sw_act == null ]] || (( _sw_w > _sw_act )); }; then
            _sw_act=$_sw_w
        fi
    done < <(_sw_tmux list-windows -t "=$SWARM_SESSION" -F '#{window_activity}' 2>/dev/null || true)
fi
# ---- progress: what the agents did, as bounded numbers only (status.progress) ----
# The agents own the workspace, the message log and the tmux server: everything read here is
# reduced to validated integers, every read is bounded in time (and the log in bytes), and a value
# that cannot be read is null. Nothing read here is executed: git runs without hooks, fsmonitor,
# external diff or textconv, and writes no lock.
_sw_to=()
command -v timeout >/dev/null 2>&1 && _sw_to=(timeout -s KILL "$SWARM_PROGRESS_TIMEOUT_S")
_sw_int() { [[ $1 =~ ^[0-9]{1,12}$ ]] && REPLY=$(( 10#$1 )) || REPLY=null; }
# Coordinator messages: claudeswarm appends one JSON line per message to agent_messages.log in its
# project root (the workspace) and rotates it to agent_messages.log.old past 10 MB. Counted: lines
# that start as its records do, in at most SWARM_LOG_SCAN_BYTES of each file.
_sw_msgs=null _sw_msgt=null
if [[ $SWARM_COORD_ENABLED == 1 ]]; then
    _sw_msgs=0
    for _sw_f in "$SWARM_WORKDIR/agent_messages.log.old" "$SWARM_WORKDIR/agent_messages.log"; do
        [[ -f $_sw_f ]] || continue
        _sw_n=$( { ${_sw_to[@]+"${_sw_to[@]}"} head -c "$SWARM_LOG_SCAN_BYTES" -- "$_sw_f" 2>/dev/null || true; } \
            | LC_ALL=C grep -a -c '^{"sender": \{0,1\}"' || true)
        _sw_int "$_sw_n"; [[ $REPLY != null ]] && _sw_msgs=$(( _sw_msgs + REPLY ))
    done
    _sw_int "$(stat -L -c %Y -- "$SWARM_WORKDIR/agent_messages.log" 2>/dev/null || true)"; _sw_msgt=$REPLY
fi
# The workspace: commits since the pinned commit, and files that differ from it (changed, added or
# deleted, committed or not, plus untracked files; the coordinator's own files left out).
_sw_commits=null _sw_files=null
if [[ $SWARM_WS_BASE =~ ^[0-9a-f]{40}$ && -d $SWARM_WORKDIR/.git ]] && command -v git >/dev/null 2>&1; then
    _sw_g=(env GIT_OPTIONAL_LOCKS=0 GIT_TERMINAL_PROMPT=0 ${_sw_to[@]+"${_sw_to[@]}"} git -C "$SWARM_WORKDIR"
        -c core.fsmonitor=false -c core.untrackedCache=false -c core.hooksPath=/dev/null)
    _sw_skip=(':(exclude,top)agent_messages.log' ':(exclude,top)agent_messages.log.old'
        ':(exclude,top)ACTIVE_AGENTS.json' ':(exclude,top).agent_locks')
    _sw_int "$("${_sw_g[@]}" rev-list --count --max-count="$SWARM_PROGRESS_MAX" "$SWARM_WS_BASE..HEAD" 2>/dev/null || true)"
    _sw_commits=$REPLY
    _sw_names() {
        "${_sw_g[@]}" diff --name-only -z --no-renames --no-ext-diff --no-textconv "$SWARM_WS_BASE" -- . "${_sw_skip[@]}" \
            && "${_sw_g[@]}" ls-files -z --others --exclude-standard -- . "${_sw_skip[@]}"
    }
    if _sw_n=$(_sw_names 2>/dev/null | tr -cd '\0' | wc -c); then _sw_int "${_sw_n//[[:space:]]/}"; _sw_files=$REPLY; fi
fi
# Last output per agent: the kernel stamps a terminal's mtime when a program writes to it (at an
# 8-second grain), so each pane's tty says when its agent last printed. One tmux call, one stat.
_sw_outs=() _sw_ttys=()
declare -A _sw_tty_of=()
if [[ $_sw_server == true ]]; then
    while read -r _sw_a _sw_t; do
        [[ $_sw_a =~ ^[0-9]{1,3}$ ]] && (( 10#$_sw_a < SWARM_AGENTS )) && [[ $_sw_t =~ ^/dev/pts/[0-9]{1,7}$ ]] || continue
        [[ -n ${_sw_tty_of[$_sw_t]+x} ]] && continue
        _sw_tty_of[$_sw_t]=$(( 10#$_sw_a )); _sw_ttys+=("$_sw_t")
    done < <(_sw_tmux list-panes -s -t "=$SWARM_SESSION:" -F '#{@swarm_agent} #{pane_tty}' 2>/dev/null || true)
fi
declare -A _sw_seen=()
if (( ${#_sw_ttys[@]} )); then
    while read -r _sw_t _sw_m; do
        [[ -n ${_sw_tty_of[$_sw_t]+x} ]] || continue
        _sw_i=${_sw_tty_of[$_sw_t]}
        [[ -n ${_sw_seen[$_sw_i]+x} ]] && continue
        _sw_int "$_sw_m"; [[ $REPLY == null ]] && continue
        _sw_seen[$_sw_i]=1; _sw_outs+=("{\"index\":$_sw_i,\"output\":$REPLY}")
    done < <(${_sw_to[@]+"${_sw_to[@]}"} stat -L -c '%n %Y' -- "${_sw_ttys[@]}" 2>/dev/null || true)
fi
_sw_join ${_sw_outs[@]+"${_sw_outs[@]}"}
_sw_progress="{\"messages\":$_sw_msgs,\"message_time\":$_sw_msgt,\"commits\":$_sw_commits,\"files\":$_sw_files,\"agents\":[$REPLY]}"
_sw_clock=$(date +%s)
_sw_json "$SWARM_SESSION"; _sw_s=$REPLY
_sw_join ${_sw_panes[@]+"${_sw_panes[@]}"}; _sw_pj=$REPLY
_sw_join ${_sw_missing[@]+"${_sw_missing[@]}"}; _sw_mj=$REPLY
_sw_emit "{\"kind\":\"probe\",\"version\":1,\"session\":$_sw_s,\"server\":$_sw_server,\
\"agents\":{\"desired\":$SWARM_AGENTS,\"alive\":$_sw_alive,\"dead\":$_sw_dead},\"missing\":[$_sw_mj],\"extra\":$_sw_extra,\
\"panes\":[$_sw_pj],\"registry\":$_sw_registry,\"mcp\":$_sw_mcp,\"activity\":$_sw_act,\"clock\":$_sw_clock,\"progress\":$_sw_progress}"
exit 0
