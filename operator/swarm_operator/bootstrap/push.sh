# ---- push: save the agents' work to a branch of the workspace repository ----
# One run: if the work tree differs from HEAD (untracked files included, .gitignore'd ones not), a
# work-in-progress commit of it is made on top of HEAD through a private index -- the agents' HEAD,
# index and files are left exactly as they were, so a periodic push never disturbs them -- then that
# commit (else HEAD) is pushed to refs/heads/$SWARM_PUSH_BRANCH. The push fast-forwards the branch,
# or, when the operator knows what it pushed last ($SWARM_PUSH_LEASE), overwrites only that
# (--force-with-lease): the agents may rewrite their own history, nobody else's commits are lost.
unset -v TMUX TMUX_PANE

# The push credential: on stdin (NAME NUL VALUE NUL ..., an empty NAME ends it), never the environment.
if [[ ! -t 0 ]]; then
    while IFS= read -r -d '' _sw_k; do
        [[ -n $_sw_k ]] || break
        IFS= read -r -d '' _sw_v || true
        [[ $_sw_k == SWARM_SECRET_GIT_PASSWORD ]] && printf -v SWARM_SECRET_GIT_PASSWORD '%s' "$_sw_v"
    done
    unset -v _sw_k _sw_v
fi
exec 0< /dev/null

_sw_abs "$SWARM_STATE_DIR"; SWARM_STATE_DIR=$REPLY
_sw_abs "$SWARM_WORKDIR"; SWARM_WORKDIR=$REPLY
mkdir -p -- "$SWARM_STATE_DIR"
chmod 700 -- "$SWARM_STATE_DIR"
# The setup's technique: a 0600 file in the 0700 state directory, written by a builtin, read by a
# credential helper whose text holds its path only; removed when this script ends, however it ends.
_sw_pw_file=$SWARM_STATE_DIR/git-push-credential
_sw_index=$SWARM_STATE_DIR/push.index
rm -f -- "$_sw_pw_file" "$_sw_index"
trap 'rm -f -- "$_sw_pw_file" "$_sw_index"' EXIT
if [[ -n ${SWARM_SECRET_GIT_PASSWORD-} ]]; then
    printf '%s' "$SWARM_SECRET_GIT_PASSWORD" > "$_sw_pw_file"   # umask 077: 0600
fi
unset -v SWARM_SECRET_GIT_PASSWORD
_sw_tail() { local s=$1; REPLY=${s:$(( ${#s} > 300 ? ${#s} - 300 : 0 ))}; }

_sw_head='' _sw_commit='' _sw_pushed='' _sw_wip=false _sw_err='' _sw_skipped=''
_sw_push() {
    local dir=$SWARM_WORKDIR gitdir tree base out lease=()
    if ! command -v git >/dev/null 2>&1; then
        _sw_err='git is not installed in the sandbox'; return 0
    fi
    if ! gitdir=$(git -C "$dir" rev-parse --absolute-git-dir 2>/dev/null); then
        _sw_skipped="$dir is not a git clone (the workspace was never cloned)"; return 0
    fi
    if ! _sw_head=$(git -C "$dir" rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null); then
        _sw_skipped="the workspace in $dir has no commit"; _sw_head=''; return 0
    fi
    _sw_commit=$_sw_head
    # The work tree as a tree object, through a private copy of the index (never the agents' own).
    [[ -f $gitdir/index ]] && cp -- "$gitdir/index" "$_sw_index"
    if ! out=$(GIT_INDEX_FILE=$_sw_index git -C "$dir" add -A -- . 2>&1) \
        || ! tree=$(GIT_INDEX_FILE=$_sw_index git -C "$dir" write-tree 2>&1); then
        _sw_tail "${out:-$tree}"; _sw_err="cannot record the uncommitted changes: $REPLY"; return 0
    fi
    base=$(git -C "$dir" rev-parse "$_sw_head^{tree}")
    if [[ $tree != "$base" ]]; then
        if ! out=$(GIT_AUTHOR_NAME=$SWARM_PUSH_AUTHOR GIT_AUTHOR_EMAIL=$SWARM_PUSH_EMAIL \
            GIT_COMMITTER_NAME=$SWARM_PUSH_AUTHOR GIT_COMMITTER_EMAIL=$SWARM_PUSH_EMAIL \
            git -C "$dir" -c commit.gpgSign=false commit-tree "$tree" -p "$_sw_head" -m "$SWARM_PUSH_MESSAGE" 2>&1); then
            _sw_tail "$out"; _sw_err="cannot make the work-in-progress commit: $REPLY"; return 0
        fi
        _sw_commit=$out _sw_wip=true
    fi
    if [[ $_sw_commit == "$SWARM_PUSH_LEASE" ]]; then
        _sw_pushed=$_sw_commit   # the branch holds it already (pushed last time): nothing to send
        return 0
    fi
    [[ -n $SWARM_PUSH_LEASE ]] && lease=("--force-with-lease=refs/heads/$SWARM_PUSH_BRANCH:$SWARM_PUSH_LEASE")
    if ! out=$(_sw_git -C "$dir" push -q ${lease[@]+"${lease[@]}"} -- "$SWARM_WS_REPO" \
        "$_sw_commit:refs/heads/$SWARM_PUSH_BRANCH" 2>&1); then
        _sw_tail "$out"; _sw_err="git push to $SWARM_PUSH_BRANCH failed: $REPLY"; return 0
    fi
    _sw_pushed=$_sw_commit
}
if command -v flock >/dev/null 2>&1; then
    # One push at a time (a periodic one and a delete's may meet): the second waits, bounded.
    exec 8> "$SWARM_STATE_DIR/push.lock"
    flock -w "$SWARM_LOCK_TIMEOUT_S" 8 || _sw_err="another push holds $SWARM_STATE_DIR/push.lock"
fi
[[ -n $_sw_err ]] || _sw_push
_sw_r='{"kind":"push","version":1'
for _sw_n in branch:SWARM_PUSH_BRANCH head:_sw_head commit:_sw_commit pushed:_sw_pushed error:_sw_err skipped:_sw_skipped; do
    _sw_v=${_sw_n#*:}
    if [[ -n ${!_sw_v} ]]; then _sw_json "${!_sw_v}"; _sw_r+=",\"${_sw_n%%:*}\":$REPLY"; else _sw_r+=",\"${_sw_n%%:*}\":null"; fi
done
_sw_emit "$_sw_r,\"wip\":$_sw_wip}"
exit 0
