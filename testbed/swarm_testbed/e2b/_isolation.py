"""How an emulated sandbox's commands get a private ``/home/user`` and ``/tmp``, and how they all die.

A real E2B sandbox is a VM: its own home, its own ``/tmp``, nothing shared with its neighbours. Here
each command runs under ``unshare --mount`` (root) or ``unshare --user --map-root-user --mount``
(unprivileged) with the sandbox's directories bind-mounted over ``/home/user`` and ``/tmp``, so two
sandboxes' tmux servers (whose sockets live in ``$TMUX_TMPDIR=/tmp``) can never meet. Where private
mounts are impossible the sandbox falls back to directories passed as ``HOME``/``TMPDIR``/
``TMUX_TMPDIR`` — weaker (absolute paths leak onto the host) but still separate.

Processes are found for killing by a marker in their environment, not by process group: a tmux
server (like any daemon) leaves the group it was spawned in but keeps its environment.
"""

from __future__ import annotations

import enum
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from swarm_testbed.e2b._templates import APT_INSTALLABLE, PLAYGROUND_DIR, TemplateImage

SANDBOX_HOME = "/home/user"
SANDBOX_TMP = "/tmp"
#: Where a stock template's stand-ins live inside the sandbox (a private bind mount): on the PATH that
#: ``/etc/profile`` sets for ``bash -l``, ahead of /usr/bin, and writable by the sandbox's installs.
SANDBOX_LOCAL_BIN = "/usr/local/bin"
#: E2B's gateway writes its token here (e2b SDK ``get_mcp_token``); private per sandbox.
SANDBOX_MCP_DIR = "/etc/mcp-gateway"
#: Host directory whose programs a stock template hides (an overlay whiteout); /bin is a symlink to
#: it on merged-/usr systems.
_HOST_BIN = "/usr/bin"
MARKER_VAR = "E2B_EMULATOR_SANDBOX"

# Runs inside the fresh mount namespace: bind the sandbox's directories, enter the working directory,
# then become the requested command (``exec`` keeps the pid the SDK was told about).
_WRAPPER = (
    'mount --bind "$1" /home/user && mount --bind "$2" /tmp || exit 125\n'
    'cd -- "$3" || exit 1\n'
    "shift 3\n"
    'exec "$@"\n'
)
#: Drops to an unprivileged uid (after the mounts, which need root): no supplementary groups, no
#: capabilities kept, and no way back (setpriv's default: no new privileges via setuid binaries
#: would still work, so ``--no-new-privs`` too).
_SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"


def _drop_to(uid: int) -> list[str]:
    return [
        _SETPRIV,
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
    ]


class Isolation(enum.Enum):
    """How sandboxes are kept apart on this machine."""

    MOUNT_NAMESPACE = "mount-namespace"  # root: plain ``unshare --mount``
    USER_NAMESPACE = "user-namespace"  # unprivileged: ``unshare --user --map-root-user --mount``
    DIRECTORIES = "directories"  # fallback: HOME/TMPDIR/TMUX_TMPDIR point at private directories


def detect_isolation(scratch: Path) -> Isolation:
    """Probe, once, which kind of isolation really works here (not which one ought to)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return Isolation.DIRECTORIES
    try:
        os.makedirs(SANDBOX_HOME, exist_ok=True)
    except OSError:
        return Isolation.DIRECTORIES
    probe_home = scratch / "probe-home"
    probe_tmp = scratch / "probe-tmp"
    probe_home.mkdir(parents=True, exist_ok=True)
    probe_tmp.mkdir(parents=True, exist_ok=True)
    (probe_home / "marker").write_text("ok")
    try:
        candidates = [
            (Isolation.MOUNT_NAMESPACE, [unshare, "--mount", "--propagation", "private"]),
            (
                Isolation.USER_NAMESPACE,
                [unshare, "--user", "--map-root-user", "--mount", "--propagation", "private"],
            ),
        ]
        for kind, prefix in candidates:
            if kind is Isolation.MOUNT_NAMESPACE and os.geteuid() != 0:
                continue
            argv = [
                *prefix,
                "/bin/sh",
                "-c",
                _WRAPPER,
                "sh",
                str(probe_home),
                str(probe_tmp),
                "/",
                "/bin/cat",
                f"{SANDBOX_HOME}/marker",
            ]
            try:
                done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if done.returncode == 0 and done.stdout == b"ok":
                return kind
        return Isolation.DIRECTORIES
    finally:
        shutil.rmtree(probe_home, ignore_errors=True)
        shutil.rmtree(probe_tmp, ignore_errors=True)


def prepare_whiteouts(scratch: Path, names: tuple[str, ...], isolation: Isolation) -> Path | None:
    """A directory of overlay whiteouts (character devices 0:0) for ``names``, usable as the top
    lower layer over /usr/bin so those programs vanish inside a sandbox -- if this machine allows it
    (probed once for real); None otherwise (then stock templates cannot hide host programs)."""
    if isolation is Isolation.DIRECTORIES:
        return None
    whiteouts = scratch / "whiteouts"
    whiteouts.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            if not (whiteouts / name).exists():
                os.mknod(whiteouts / name, 0o600 | 0o020000, os.makedev(0, 0))
    except OSError:
        return None
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    prefix = [unshare, "--mount", "--propagation", "private"]
    if isolation is Isolation.USER_NAMESPACE:
        prefix = [unshare, "--user", "--map-root-user", "--mount", "--propagation", "private"]
    probe = (
        f"mount -t overlay e2b-emulator -o lowerdir={whiteouts}:{_HOST_BIN} {_HOST_BIN} || exit 125\n"
        f"[ ! -e {_HOST_BIN}/{names[0]} ] && [ -e {_HOST_BIN}/sh ]"
    )
    try:
        done = subprocess.run([*prefix, "/bin/sh", "-c", probe], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return whiteouts if done.returncode == 0 else None


def prepare_mcp_mountpoint(isolation: Isolation) -> bool:
    """An empty host /etc/mcp-gateway to bind each sandbox's own over (root only)."""
    if isolation is Isolation.DIRECTORIES:
        return False
    try:
        os.makedirs(SANDBOX_MCP_DIR, exist_ok=True)
    except OSError:
        return False
    return True


class SandboxFS:
    """The on-host directories behind one sandbox, and the mapping of its paths onto them."""

    def __init__(
        self,
        root: Path,
        isolation: Isolation,
        home_template: Path | None = None,
        user_uid: int | None = None,
        image: TemplateImage | None = None,
        whiteouts: Path | None = None,
        mcp_mountpoint: bool = False,
    ) -> None:
        self.root = root
        self.isolation = isolation
        self.user_uid = user_uid
        self.home = root / "home"
        self.tmp = root / "tmp"
        self.home.mkdir(parents=True, exist_ok=True)
        if home_template is not None:
            # Copies, never symlinks (issue 15 item 7): the sandbox's private /tmp hides a checkout
            # under /tmp, so a link into the checkout would dangle inside the sandbox.
            shutil.copytree(
                home_template, self.home, symlinks=False, ignore_dangling_symlinks=True, dirs_exist_ok=True
            )
        self.tmp.mkdir(parents=True, exist_ok=True)
        os.chmod(self.tmp, 0o1777)
        #: A stock template's private /usr/local/bin and /etc/mcp-gateway (None: host tools as they are).
        self.image = image if isolation is not Isolation.DIRECTORIES else None
        self.local_bin: Path | None = None
        self.mcp_dir: Path | None = None
        self.whiteouts = whiteouts if self.image is not None else None
        if self.image is not None:
            self._install_image(self.image, mcp_mountpoint)
        elif mcp_mountpoint and isolation is not Isolation.DIRECTORIES:
            # Any template: a gateway run as root writes /etc/mcp-gateway/.token, which must land in
            # this sandbox's own /etc, never the host's (or the next sandbox's).
            self.mcp_dir = self.root / "sys" / "etc-mcp-gateway"
            self.mcp_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.mcp_dir, 0o700)
        if user_uid is not None:
            # The home belongs to the sandbox's user, as in an E2B template.
            self.chown(self.home, recursive=True)

    def _install_image(self, image: TemplateImage, mcp_mountpoint: bool) -> None:
        local_bin = self.root / "sys" / "bin"
        (local_bin / ".real").mkdir(parents=True, exist_ok=True)
        (local_bin / ".e2b-emulator").mkdir(parents=True, exist_ok=True)
        for name, source in image.tools:
            shutil.copy2(source, local_bin / name)
            os.chmod(local_bin / name, 0o755)
        shutil.copy2(PLAYGROUND_DIR / "claude", local_bin / ".e2b-emulator" / "claude")
        for name in APT_INSTALLABLE:
            (local_bin / ".real" / name).touch()  # mount point for the host's binary
        os.chmod(local_bin, 0o755)
        self.local_bin = local_bin
        if mcp_mountpoint:
            self.mcp_dir = self.root / "sys" / "etc-mcp-gateway"
            self.mcp_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.mcp_dir, 0o700)
        if self.user_uid is not None:
            # The sudo stand-in cannot switch uids: what root could write, the user's uid may write.
            self.chown(local_bin, recursive=True)

    def installs(self) -> list[dict[str, str]]:
        """What the stand-in package managers installed in this sandbox, in order."""
        if self.local_bin is None:
            return []
        try:
            lines = (self.local_bin / ".e2b-emulator" / "installs.jsonl").read_text().splitlines()
        except OSError:
            return []
        found = []
        for line in lines:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def uid_for(self, user: str | None) -> int | None:
        """The uid a command for ``user`` runs as; None: the emulator's own (root)."""
        if self.user_uid is None or user in (None, "", "root"):
            return None
        return self.user_uid

    def chown(self, path: Path, *, recursive: bool = False) -> None:
        """Give ``path`` to the sandbox's user (no-op unless one is configured)."""
        if self.user_uid is None:
            return
        uid = self.user_uid
        targets = [path]
        if recursive:
            for parent, dirs, files in os.walk(path):
                targets += [Path(parent, name) for name in dirs + files]
        for target in targets:
            try:
                os.lchown(target, uid, uid)
            except OSError:
                pass

    def resolve(self, path: str) -> str:
        """The sandbox-side absolute path for what a client sent (relative paths are from home)."""
        # e2b-dev/infra packages/envd/internal/permissions/path.go (expand): "~" and "~/..." are
        # the user's home.
        if path == "~" or path.startswith("~/"):
            path = SANDBOX_HOME + path[1:]
        if not path.startswith("/"):
            path = f"{SANDBOX_HOME}/{path}"
        return os.path.normpath(path).replace("//", "/")

    def host_path(self, path: str) -> Path:
        """Where a sandbox path lives on the host; paths outside home and /tmp are the host's own."""
        sandbox_path = self.resolve(path)
        mapping = [(SANDBOX_HOME, self.home), (SANDBOX_TMP, self.tmp)]
        if self.local_bin is not None:
            mapping.append((SANDBOX_LOCAL_BIN, self.local_bin))
        if self.mcp_dir is not None:
            mapping.append((SANDBOX_MCP_DIR, self.mcp_dir))
        for prefix, local in mapping:
            if sandbox_path == prefix:
                return local
            if sandbox_path.startswith(prefix + "/"):
                return local / sandbox_path[len(prefix) + 1 :]
        return Path(sandbox_path)

    def command_argv(
        self, cmd: str, args: list[str], cwd: str, uid: int | None = None
    ) -> tuple[list[str], str]:
        """The argv that runs ``cmd args`` inside this sandbox (as ``uid`` when given), and the
        host cwd to start it in."""
        if uid is not None:
            cmd, args = _drop_to(uid)[0], [*_drop_to(uid)[1:], cmd, *args]
        if self.isolation is Isolation.DIRECTORIES:
            return [cmd, *args], str(self.host_path(cwd))
        unshare = shutil.which("unshare") or "/usr/bin/unshare"
        prefix = [unshare, "--mount", "--propagation", "private"]
        if self.isolation is Isolation.USER_NAMESPACE:
            prefix = [unshare, "--user", "--map-root-user", "--mount", "--propagation", "private"]
        argv = [
            *prefix,
            "/bin/sh",
            "-c",
            self._image_mounts() + _WRAPPER,
            "sh",
            str(self.home),
            str(self.tmp),
            cwd,
            cmd,
            *args,
        ]
        return argv, "/"

    def _image_mounts(self) -> str:
        """Shell lines that give a stock template's sandbox its view of the host's programs: its own
        /usr/local/bin (stand-ins, installs), its own /etc/mcp-gateway, the host's installable
        programs kept reachable under /usr/local/bin/.real, then /usr/bin with the template's absent
        programs whited out. Runs before /tmp is replaced (the sandbox's directories may live there)."""
        q = shlex.quote
        if self.local_bin is None:
            if self.mcp_dir is None:
                return ""
            return f"mount --bind {q(str(self.mcp_dir))} {SANDBOX_MCP_DIR} || exit 125\n"
        lines = [f"mount --bind {q(str(self.local_bin))} {SANDBOX_LOCAL_BIN} || exit 125"]
        if self.mcp_dir is not None:
            lines.append(f"mount --bind {q(str(self.mcp_dir))} {SANDBOX_MCP_DIR} || exit 125")
        if self.whiteouts is not None:
            for name in APT_INSTALLABLE:
                if os.path.isfile(f"{_HOST_BIN}/{name}"):
                    # through the in-sandbox path: a mount on the host path would not show through
                    # the (non-recursive) bind above
                    lines.append(
                        f"mount --bind {_HOST_BIN}/{name} {SANDBOX_LOCAL_BIN}/.real/{name} || exit 125"
                    )
            lines.append(
                f"mount -t overlay e2b-emulator -o lowerdir={q(str(self.whiteouts))}:{_HOST_BIN} "
                f"{_HOST_BIN} || exit 125"
            )
        return "\n".join(lines) + "\n"

    def base_env(self) -> dict[str, str]:
        """Variables that place home and temp files inside the sandbox, whatever the isolation."""
        if self.isolation is Isolation.DIRECTORIES:
            return {"HOME": str(self.home), "TMPDIR": str(self.tmp), "TMUX_TMPDIR": str(self.tmp)}
        return {"HOME": SANDBOX_HOME, "TMUX_TMPDIR": SANDBOX_TMP}

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def find_marked(token: str) -> list[int]:
    """Pids of live processes whose environment carries this sandbox's marker."""
    needle = f"{MARKER_VAR}={token}".encode()
    found: list[int] = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def signal_marked(token: str, sig: signal.Signals) -> int:
    """Send ``sig`` to every process of the sandbox; returns how many were signalled."""
    count = 0
    for pid in find_marked(token):
        try:
            os.kill(pid, sig)
            count += 1
        except OSError:
            pass
    return count


def kill_marked(token: str, rounds: int = 20) -> None:
    """SIGKILL every process of the sandbox, repeating while forks race the sweep.

    Stopped (paused) processes die on SIGKILL too, so pause needs no special case here.
    """
    for _ in range(rounds):
        if signal_marked(token, signal.SIGKILL) == 0:
            return
        time.sleep(0.01)  # a killed process lingers in /proc for a moment; let it go
