"""A real JupyterHub on this machine, on loopback only: for the tests and the class simulator.

``python deploy/local_hub.py`` starts one and prints its address and the shared
password; Ctrl-C stops it.  It is the hub a trainer deploys (``deploy/README.md``)
with three things swapped for a single machine without users or a domain:

* JupyterHub from PyPI (the ``hub`` extra) behind ``configurable-http-proxy``
  (npm: ``make hub`` puts it in ``.venv/node``), as on TLJH and Z2JH;
* ``SimpleLocalProcessSpawner``: every trainee's single-user server is a
  process of this user, home ``<workdir>/home/<name>`` (TLJH uses systemd
  units per Unix user, Z2JH a pod per user);
* a testing authenticator with one random password (``shared-password``,
  JupyterHub 5.3's replacement of the dummy one's password) — acceptable only
  because everything listens on 127.0.0.1; what a trainer deploys uses
  NativeAuthenticator or OAuth behind HTTPS (``deploy/jupyterhub_config.py``).

The API token of the simulator's service and the proxy's token are made at
start and live only in the hub's environment and the work directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
SERVICE = "class-sim"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def find_proxy() -> str | None:
    """``configurable-http-proxy``: ``$LABKIT_CHP``, PATH, or ``<venv>/node`` (``make hub``)."""
    for candidate in (os.environ.get("LABKIT_CHP"), shutil.which("configurable-http-proxy"),
                      str(Path(sys.prefix) / "node" / "node_modules" / ".bin"
                          / "configurable-http-proxy")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing() -> str | None:
    """What this machine lacks to run the local hub (None: nothing)."""
    try:
        import jupyterhub  # noqa: F401
        import nbgitpuller  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} (pip install -e '.[hub]')"
    if shutil.which("git") is None:
        return "git (apt-get install git)"
    if find_proxy() is None:
        return ("configurable-http-proxy (make hub, or npm install --prefix .venv/node "
                "configurable-http-proxy@5)")
    return None


def lab_repository(dest: Path, root: Path = ROOT) -> Path:
    """A bare git repository at ``dest`` whose branch ``main`` is ``root``'s HEAD.

    nbgitpuller clones from it as it would from the course's public repository.
    """
    subprocess.run(["git", "init", "--quiet", "--bare", str(dest)], check=True)
    subprocess.run(["git", "-C", str(root), "push", "--quiet", str(dest), "HEAD:refs/heads/main"],
                   check=True)
    return dest


def nbgitpuller_link(hub_url: str, repo: str, branch: str = "main",
                     notebook: str = "notebooks/00-start-here.ipynb",
                     targetpath: str = "labkit") -> str:
    """The link a trainer hands out: log in, get a server, pull the lab, open ``notebook``."""
    query = urllib.parse.urlencode({
        "repo": repo, "branch": branch, "targetpath": targetpath,
        "urlpath": f"lab/tree/{targetpath}/{notebook}",
    })
    return f"{hub_url.rstrip('/')}/hub/user-redirect/git-pull?{query}"


CONFIG = """\
# Written by deploy/local_hub.py: a JupyterHub on loopback for tests and the class simulator.
import json, os
settings = json.loads(os.environ["LABKIT_HUB_SETTINGS"])
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = settings["url"]
c.JupyterHub.hub_bind_url = settings["hub_url"]
c.ConfigurableHTTPProxy.api_url = settings["proxy_api_url"]
c.ConfigurableHTTPProxy.command = [settings["proxy"]]
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.db_url = "sqlite:///" + settings["workdir"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = settings["workdir"] + "/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = settings["workdir"] + "/jupyterhub.pid"
c.JupyterHub.cleanup_servers = True
# a testing authenticator (JupyterHub 5.3's successor of "dummy" with a password): loopback
# only (bind_url above); a class uses deploy/jupyterhub_config.py
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ["LABKIT_HUB_PASSWORD"]
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = settings["workdir"] + "/home/{username}"
c.Spawner.ip = "127.0.0.1"
c.Spawner.cmd = [settings["singleuser"]]
c.Spawner.args = settings["singleuser_args"]
c.Spawner.default_url = "/lab"
c.Spawner.environment = settings["environment"]
c.Spawner.start_timeout = settings["timeout"]
c.Spawner.http_timeout = settings["timeout"]
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.services = [{"name": "class-sim", "api_token": os.environ["LABKIT_HUB_TOKEN"]}]
c.JupyterHub.load_roles = [{
    "name": "class-sim",
    "scopes": ["admin:users", "admin:servers", "admin:server_state", "tokens", "read:hub"],
    "services": ["class-sim"],
}]
"""


class LocalHub:
    """JupyterHub + configurable-http-proxy on 127.0.0.1, in a private work directory.

    Use as a context manager; :meth:`stop` ends the hub, the proxy and every
    single-user server (and their kernels) it started.
    """

    def __init__(self, workdir: Path | None = None, timeout: float = 120.0,
                 environment: dict[str, str] | None = None) -> None:
        why = missing()
        if why is not None:
            raise RuntimeError(f"the local hub needs {why}")
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="labkit-hub-"))
        (self.workdir / "home").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.password = secrets.token_urlsafe(16)
        self.token = secrets.token_hex(32)
        self.timeout = timeout
        env = {"PYTHONPATH": str(ROOT), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
        env.update(environment or {})
        bindir = Path(sys.executable).parent
        self.settings: dict[str, Any] = {
            "url": self.url,
            "hub_url": f"http://{LOOPBACK}:{free_port()}",
            "proxy_api_url": f"http://{LOOPBACK}:{free_port()}",
            "proxy": find_proxy(),
            "workdir": str(self.workdir),
            "singleuser": str(bindir / "jupyterhub-singleuser"),
            # JupyterLab refuses root unless told (CI and this machine run as root)
            "singleuser_args": ["--allow-root"] if os.getuid() == 0 else [],
            "environment": env,
            "timeout": int(timeout),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "jupyterhub.log"

    # -- life cycle ---------------------------------------------------------------
    def start(self) -> LocalHub:
        config = self.workdir / "jupyterhub_config.py"
        config.write_text(CONFIG)
        env = dict(os.environ, LABKIT_HUB_SETTINGS=json.dumps(self.settings),
                   LABKIT_HUB_PASSWORD=self.password, LABKIT_HUB_TOKEN=self.token,
                   CONFIGPROXY_AUTH_TOKEN=secrets.token_hex(32))
        env.pop("JUPYTERHUB_API_TOKEN", None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=self.workdir,
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterHub exited ({self.proc.returncode}):\n"
                                   f"{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/hub/api/", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"JupyterHub did not answer within {self.timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        """Stop the hub: it stops every server (``cleanup_servers``) and the proxy it
        started; whatever of them outlives it is killed; the directory is removed."""
        if self.proc is not None and self.proc.poll() is None:
            import psutil

            try:
                children = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.Error:
                children = []
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.kill()
            psutil.wait_procs(children, timeout=10)
        self.proc = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- the hub's REST API, as the simulator's service -----------------------------
    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        return requests.request(method, f"{self.url}/hub/api{path}",
                                headers={"Authorization": f"token {self.token}"}, **kw)

    def server_pid(self, name: str) -> int | None:
        """The process id of ``name``'s single-user server (from the spawner's state)."""
        model = self.api("GET", f"/users/{name}").json()
        state = (model.get("servers") or {}).get("", {}).get("state") or {}
        pid = state.get("pid")
        return int(pid) if pid else None

    def user_token(self, name: str) -> str:
        """A token for ``name`` (what a trainee's browser holds as a cookie)."""
        r = self.api("POST", f"/users/{name}/tokens", json={"note": "class simulator"})
        r.raise_for_status()
        return str(r.json()["token"])


def login(hub_url: str, name: str, password: str, timeout: float = 60.0) -> requests.Session:
    """Log ``name`` in through the hub's login form, as a browser does; the session keeps
    the hub's cookies."""
    s = requests.Session()
    s.get(f"{hub_url}/hub/login", timeout=timeout).raise_for_status()
    xsrf = s.cookies.get("_xsrf", "")
    r = s.post(f"{hub_url}/hub/login?next=", data={"username": name, "password": password,
                                                     "_xsrf": xsrf},
               timeout=timeout, allow_redirects=False)
    if r.status_code not in (302, 303) or not any(c.name.startswith("jupyterhub-")
                                                  for c in s.cookies):
        raise RuntimeError(f"login of {name} failed: HTTP {r.status_code}")
    return s


def main() -> int:
    why = missing()
    if why is not None:
        print(f"the local hub needs {why}", file=sys.stderr)
        return 1
    with LocalHub() as hub:
        repo = lab_repository(hub.workdir / "labkit.git")
        print(f"JupyterHub on {hub.url} (loopback only); any user name, password {hub.password}")
        print("the lab for a trainee:", nbgitpuller_link(hub.url, f"file://{repo}"))
        print("Ctrl-C stops it.")
        try:
            while hub.proc is not None and hub.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
