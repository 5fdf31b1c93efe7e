"""A git server for the e2e tests: bare repositories served over HTTPS on 127.0.0.1 with Basic auth,
by git's own smart-HTTP CGI (``git http-backend``), so the sandbox can clone *and push*.

HTTPS, not a test-only escape in the URL validation: the sandbox trusts the test's self-signed CA
through ``~/.gitconfig`` in its home template (:func:`trust`), the way a company template ships its
CA. ``stop()`` takes the server down (connections refused), for the failure paths.
"""

from __future__ import annotations

import base64
import http.server
import os
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

USER = "x-access-token"


def git(*args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass
class SmartGitServer:
    url: str
    ca: Path
    bare: Path
    base_commit: str
    token: str
    requests: list[tuple[str, str]] = field(default_factory=list)
    _server: Any = field(default=None, repr=False)

    def head(self, branch: str) -> str | None:
        """The branch's commit on the server, or None."""
        try:
            return git("rev-parse", "-q", "--verify", f"refs/heads/{branch}", cwd=self.bare)
        except subprocess.CalledProcessError:
            return None

    def show(self, rev: str, path: str) -> str:
        return git("show", f"{rev}:{path}", cwd=self.bare)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "test-git-smart"
    root: Path
    token: str
    log: list[tuple[str, str]]

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        expected = "Basic " + base64.b64encode(f"{USER}:{self.token}".encode()).decode()
        if self.headers.get("Authorization", "") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        self.log.append((self.command, path))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": USER,  # receive-pack (push) is served to authenticated users only
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        out = subprocess.run(["git", "http-backend"], env=env, input=body, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: Any) -> None:
        pass


def serve(tmp_path: Path, token: str) -> SmartGitServer:
    """A bare repository ``repo.git`` with one commit on ``main`` (tagged ``v1.0.0``), served."""
    work = tmp_path / "git-src"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README.md").write_text("version one\n")
    git("add", ".", cwd=work)
    git("commit", "-qm", "one", cwd=work)
    git("tag", "-a", "v1.0.0", "-m", "release", cwd=work)
    base = git("rev-parse", "HEAD", cwd=work)
    root = tmp_path / "git-served"
    root.mkdir()
    bare = root / "repo.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    shutil.rmtree(work)
    key, cert = tmp_path / "git-key.pem", tmp_path / "git-cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    log: list[tuple[str, str]] = []
    handler = type("Handler", (_Handler,), {"root": root, "token": token, "log": log})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return SmartGitServer(
        url=f"https://127.0.0.1:{server.server_address[1]}/repo.git",
        ca=cert,
        bare=bare,
        base_commit=base,
        token=token,
        requests=log,
        _server=server,
    )


def trust(home: Path, ca: Path) -> None:
    """Make a sandbox home template trust the server's CA, as a company template would."""
    (home / ".company-ca.pem").write_bytes(ca.read_bytes())
    with (home / ".gitconfig").open("a") as config:
        config.write("[http]\n\tsslCAInfo = ~/.company-ca.pem\n")
