# ---- teardown: Ctrl-C every agent, wait a bounded grace, then end the tmux server ----
unset -v TMUX TMUX_PANE
_sw_abs "$SWARM_STATE_DIR"; SWARM_STATE_DIR=$REPLY
SWARM_TMUX_CONF=/dev/null
_sw_server=false _sw_pids=() _sw_signalled=0 _sw_graceful=true _sw_killed=false
if _sw_tmux has-session -t "=$SWARM_SESSION" 2>/dev/null; then
    _sw_server=true
    _sw_list_panes || true
    _sw_pids=()
    for _sw_i in "${!P_ID[@]}"; do _sw_pids+=("${P_PID[$_sw_i]}"); done   # the agents to see gone
    for _sw_i in "${!P_ID[@]}"; do
        [[ ${P_DEAD[$_sw_i]} == 1 ]] && continue
        _sw_tmux send-keys -t "${P_ID[$_sw_i]}" C-c 2>/dev/null && _sw_signalled=$(( _sw_signalled + 1 ))
    done
    _sw_now_ms; _sw_deadline=$(( REPLY + SWARM_GRACE_MS ))
    while :; do
        _sw_live=0
        if _sw_list_panes; then
            for _sw_i in "${!P_ID[@]}"; do
                # A pane is marked dead when its pty closes, which can be before its agent has ended.
                [[ ${P_DEAD[$_sw_i]} == 1 ]] && ! _sw_running "${P_PID[$_sw_i]}" || _sw_live=$(( _sw_live + 1 ))
            done
        fi
        (( _sw_live == 0 )) && break
        _sw_now_ms
        if (( REPLY >= _sw_deadline )); then
            _sw_graceful=false
            break
        fi
        sleep "$SWARM_POLL_INTERVAL_S"
    done
    _sw_tmux kill-server 2>/dev/null || true
    _sw_killed=true
fi
# Gone: the server's socket answers no more, and no agent runs. The agents still running got a
# SIGHUP from the closing server; exiting takes them a moment, so wait (bounded) until they have.
_sw_gone=true
_sw_tmux has-session -t "=$SWARM_SESSION" 2>/dev/null && _sw_gone=false
_sw_now_ms; _sw_deadline=$(( REPLY + SWARM_EXIT_WAIT_MS ))
for _sw_pid in ${_sw_pids[@]+"${_sw_pids[@]}"}; do
    while _sw_running "$_sw_pid"; do
        _sw_now_ms
        if (( REPLY >= _sw_deadline )); then
            _sw_gone=false
            break 2
        fi
        sleep "$SWARM_POLL_INTERVAL_S"
    done
done
# Secrets at rest go with the agents.
rm -f -- "$SWARM_STATE_DIR/agent.env"
_sw_json "$SWARM_SESSION"; _sw_s=$REPLY
_sw_emit "{\"kind\":\"teardown\",\"version\":1,\"session\":$_sw_s,\"server\":$_sw_server,\
\"signalled\":$_sw_signalled,\"graceful\":$_sw_graceful,\"killed\":$_sw_killed,\"gone\":$_sw_gone}"
exit 0
