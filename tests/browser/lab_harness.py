"""JupyterLab + headless Chromium for the browser tests (``make browser-test``).

Starts the project venv's JupyterLab on 127.0.0.1 with a token and a temporary root dir, with
every Jupyter and workbook folder redirected to temp dirs, and shuts it (and its kernels) down
again. Chromium is Debian's ``/usr/bin/chromium`` driven by Python playwright; playwright's own
browser downloads are never used (the network is closed).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
JUPYTER = VENV / "bin" / "jupyter"
CHROMIUM = Path(os.environ.get("WORKBOOK_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags Chromium hangs on this machine's closed network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
INSTALL_HINT = ("install Debian's Chromium with `apt-get update && apt-get install -y "
                "--no-install-recommends chromium chromium-driver` (prefix sudo when not root) "
                "and playwright with `.venv/bin/pip install -r requirements-browser.txt`; "
                "`make browser-test` does both")
# As the Makefile's OFFLINE; MPLBACKEND is left out on purpose: the live kernel needs the
# inline backend (ipykernel's default), or the player's Output widget stays empty.
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

# Lab settings for the test's private settings dir: no news or update pop-ups (no network).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}


class BrowserTestError(AssertionError):
    """A step of the browser test failed; the message says which one."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_env(tmp: Path) -> dict[str, str]:
    """The server's (and so the kernel's) environment: offline, every folder under ``tmp``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "IPYTHON", "WORKBOOK_", "MPLBACKEND"))}
    env.update(OFFLINE)
    dirs = {
        "WORKBOOK_DATA_DIR": tmp / "data",
        "WORKBOOK_OUTPUTS_DIR": tmp / "outputs",
        "WORKBOOK_FIGURES_DIR": tmp / "figures",
        "JUPYTER_CONFIG_DIR": tmp / "jupyter" / "config",
        "JUPYTER_DATA_DIR": tmp / "jupyter" / "data",
        "JUPYTER_RUNTIME_DIR": tmp / "jupyter" / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": tmp / "jupyter" / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": tmp / "jupyter" / "lab-workspaces",
        "IPYTHONDIR": tmp / "ipython",
    }
    for k, p in dirs.items():
        p.mkdir(parents=True, exist_ok=True)
        env[k] = str(p)
    for name, settings in LAB_SETTINGS.items():
        f = dirs["JUPYTERLAB_SETTINGS_DIR"] / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(settings))
    # `import lib` works through the editable install; the repo on PYTHONPATH makes it certain.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(VENV / "bin"), env.get("PATH", "")])
    return env


def prepare_notebook(src: Path, dst: Path, parameters: dict, probe: str | None = None) -> Path:
    """Copy ``src`` to ``dst`` with papermill's parameter injection (no execution); ``probe`` is
    prepended as a first code cell."""
    import nbformat
    import papermill as pm

    pm.execute_notebook(str(src), str(dst), parameters=parameters, prepare_only=True,
                        kernel_name="python3", language="python", progress_bar=False,
                        log_output=False)
    nb = nbformat.read(dst, as_version=4)
    if probe:
        cell = nbformat.v4.new_code_cell(probe)
        cell.metadata["tags"] = ["browser-test-probe"]
        nb.cells.insert(0, cell)
    for c in nb.cells:  # a clean, unexecuted copy: no papermill progress metadata
        c.metadata.pop("papermill", None)
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nb.metadata.pop("papermill", None)
    nbformat.write(nb, dst)
    return dst


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc), to reap kernels the server started."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d.name))
    return out


class LabServer:
    """``jupyter lab`` from the project venv; use as a context manager (always shut down)."""

    def __init__(self, root: Path, tmp: Path, log: Path, start_timeout: float = 120.0):
        self.root, self.tmp, self.log_path = root, tmp, log
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.kernel_pids: set[int] = set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0):
        req = urllib.request.Request(self.base + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "LabServer":
        if not JUPYTER.exists():
            raise BrowserTestError(f"lab did not start: {JUPYTER} is missing (run `make setup`)")
        cmd = [str(JUPYTER), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--port-retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", "--LabApp.news_url=",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=lab_env(self.tmp), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserTestError(f"lab did not start: `jupyter lab` exited with "
                                       f"{self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                self.api("/api/status", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        raise BrowserTestError(f"lab did not start: no answer on {self.base} within "
                               f"{self.start_timeout:.0f} s; log:\n{self.log_tail()}")

    def remember_kernels(self) -> None:
        """Note the server's current child processes (the kernels) for the shutdown."""
        if self.proc and self.proc.poll() is None:
            self.kernel_pids.update(_children(self.proc.pid))

    def stop(self) -> None:
        """Shut kernels and the server down: REST first, then SIGTERM, then SIGKILL."""
        if self.proc is None:
            return
        self.remember_kernels()
        if self.proc.poll() is None:
            try:
                for k in self.api("/api/kernels"):
                    self.api(f"/api/kernels/{k['id']}", method="DELETE", timeout=10)
                self.api("/api/shutdown", method="POST", timeout=10)
            except Exception:  # noqa: BLE001 - the signals below still stop it
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self.proc.wait(timeout=10)
        for pid in self.kernel_pids:  # kernels run in sessions of their own
            _kill_if_alive(pid)
        self._log.close()
        self.proc = None

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


def _kill_if_alive(pid: int, grace: float = 5.0) -> None:
    """SIGKILL ``pid`` if it is still a kernel after ``grace`` seconds (pids can be reused)."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        if b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass
