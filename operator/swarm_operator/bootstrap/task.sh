# ---- task: type spec.task's prompt into each agent's pane, exactly once per prompt ----
# The prompts arrive on stdin (INDEX NUL PROMPT NUL ..., then an empty INDEX), never in a command
# line or the environment. Each goes into a named tmux buffer read from stdin and is pasted into
# the pane as a bracketed paste (the agent sees one prompt, newlines and all), then Enter. A mark
# per pane ($SWARM_STATE_DIR/task/INDEX) holds the hash of the prompt it was given: a pane whose
# mark already holds this hash is not typed into again, whoever asks and however often.
unset -v TMUX TMUX_PANE
_sw_abs "$SWARM_STATE_DIR"; SWARM_STATE_DIR=$REPLY
SWARM_TMUX_CONF=/dev/null   # never start a server: no server means no agent to tell
declare -A _sw_text=()
while IFS= read -r -d '' _sw_k; do
    [[ -n $_sw_k ]] || break
    IFS= read -r -d '' _sw_v || true
    [[ $_sw_k =~ ^[0-9]+$ ]] && _sw_text[$_sw_k]=$_sw_v
done
unset -v _sw_v
_sw_marks=$SWARM_STATE_DIR/task
mkdir -p -- "$_sw_marks"
if command -v flock >/dev/null 2>&1; then
    # One delivery at a time per sandbox: two runs must not both see an unmarked pane.
    exec 9> "$_sw_marks/.lock"
    flock -w 30 9 || true
fi
_sw_server=false
if _sw_tmux has-session -t "=$SWARM_SESSION" 2>/dev/null && _sw_list_panes; then
    _sw_server=true
fi
_sw_out=()
_sw_pane() {
    # _sw_pane INDEX STATE MESSAGE_OR_EMPTY -> one pane's report object appended to _sw_out.
    local m=null
    if [[ -n $3 ]]; then _sw_json "${3:0:300}"; m=$REPLY; fi
    _sw_out+=("{\"index\":$1,\"state\":\"$2\",\"message\":$m}")
}
_sw_type() {
    # _sw_type INDEX PANE_ID: paste the prompt, give the agent a moment to take the paste in (a
    # TUI reads it as one event), then press Enter.
    local buf="swarm-task-$1"
    if printf '%s' "${_sw_text[$1]}" | _sw_tmux load-buffer -b "$buf" - \
        && _sw_tmux paste-buffer -p -d -b "$buf" -t "$2"; then
        sleep 0.3
        _sw_tmux send-keys -t "$2" Enter
        return
    fi
    _sw_tmux delete-buffer -b "$buf" 2>/dev/null || true
    return 1
}
for _sw_e in ${SWARM_TASK_PANES[@]+"${SWARM_TASK_PANES[@]}"}; do
    _sw_i=${_sw_e%%:*} _sw_h=${_sw_e#*:}
    _sw_mark=$_sw_marks/$_sw_i
    if [[ -f $_sw_mark && $(< "$_sw_mark") == "$_sw_h" ]]; then
        _sw_pane "$_sw_i" held ''
    elif [[ -z ${_sw_text[$_sw_i]+x} ]]; then
        _sw_pane "$_sw_i" failed "no prompt for agent $_sw_i on stdin"
    elif [[ $_sw_server != true || -z ${P_ID[$_sw_i]+x} ]]; then
        _sw_pane "$_sw_i" failed "agent $_sw_i has no pane"
    elif [[ ${P_DEAD[$_sw_i]} == 1 ]] || _sw_booting "${P_PID[$_sw_i]}" "${P_CMD[$_sw_i]}"; then
        _sw_pane "$_sw_i" failed "agent $_sw_i is not running"
    elif _sw_type "$_sw_i" "${P_ID[$_sw_i]}"; then
        # Marked at once: a rerun after this point (the operator crashed before it recorded the
        # delivery) finds the mark and types nothing.
        printf '%s' "$_sw_h" > "$_sw_mark.tmp" && mv -f -- "$_sw_mark.tmp" "$_sw_mark"
        _sw_pane "$_sw_i" delivered ''
    else
        _sw_pane "$_sw_i" failed "tmux could not type the prompt into agent $_sw_i's pane"
    fi
done
_sw_text=()
_sw_join ${_sw_out[@]+"${_sw_out[@]}"}; _sw_pj=$REPLY
_sw_emit "{\"kind\":\"task\",\"version\":1,\"panes\":[$_sw_pj]}"
exit 0
