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
_sw_clock=$(date +%s)
_sw_json "$SWARM_SESSION"; _sw_s=$REPLY
_sw_join ${_sw_panes[@]+"${_sw_panes[@]}"}; _sw_pj=$REPLY
_sw_join ${_sw_missing[@]+"${_sw_missing[@]}"}; _sw_mj=$REPLY
_sw_emit "{\"kind\":\"probe\",\"version\":1,\"session\":$_sw_s,\"server\":$_sw_server,\
\"agents\":{\"desired\":$SWARM_AGENTS,\"alive\":$_sw_alive,\"dead\":$_sw_dead},\"missing\":[$_sw_mj],\"extra\":$_sw_extra,\
\"panes\":[$_sw_pj],\"registry\":$_sw_registry,\"mcp\":$_sw_mcp,\"activity\":$_sw_act,\"clock\":$_sw_clock}"
exit 0
