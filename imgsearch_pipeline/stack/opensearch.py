"""A real single-node OpenSearch 2.19 (with the k-NN plugin, Lucene engine) on a free loopback port.

The server is installed by `scripts/fetch_opensearch.sh` into the shared cache (`ensure_installed`); the
install folder is only read. Everything a node writes lives in its own state folder:

    <state_dir>/config/      opensearch.yml, jvm.options, log4j2.properties (copied, then rewritten)
    <state_dir>/data/        path.data
    <state_dir>/logs/        path.logs (imgsearch-local.log, gc.log) and console.log (stdout/stderr)
    <state_dir>/opensearch.pid, opensearch.json   so that another process can find, reuse or stop it

OpenSearch refuses to run as root: as root the node runs as the system user `imgsearch` (created on demand);
otherwise as the current user. The node starts in its own session and outlives the process that started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from imgsearch_pipeline import config
from imgsearch_pipeline.stack.process import free_port, pid_alive, stop_group

OPENSEARCH_VERSION = "2.19.1"
RUN_USER = "imgsearch"
CLUSTER_NAME = "imgsearch-local"
PID_FILE = "opensearch.pid"
STATE_FILE = "opensearch.json"
INSTALL_STAMP = ".imgsearch-installed"
_MAIN_CLASS = "org.opensearch.bootstrap.OpenSearch"
_FETCH_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch_opensearch.sh"


def ensure_installed(cache_dir: Path | None = None) -> Path:
    """The OpenSearch install folder `<cache_dir>/opensearch/opensearch-<version>`, fetched first if missing.

    `cache_dir` is the imgsearch cache (`IMGSEARCH_CACHE`, default ~/.cache/imgsearch). Raises RuntimeError
    with the script's output when the fetch fails (no Java, no mvn and no cached artifacts, ...).
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else config.cache_dir()
    home = cache_dir / "opensearch" / f"opensearch-{OPENSEARCH_VERSION}"
    if (home / INSTALL_STAMP).is_file() and (home / "bin" / "opensearch").is_file():
        return home
    if not _FETCH_SCRIPT.is_file():
        raise RuntimeError(f"OpenSearch is not installed in {home} and {_FETCH_SCRIPT} is missing")
    env = {**os.environ, "IMGSEARCH_OPENSEARCH_VERSION": OPENSEARCH_VERSION}
    proc = subprocess.run(
        ["bash", str(_FETCH_SCRIPT), str(cache_dir / "opensearch")],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{_FETCH_SCRIPT.name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}{proc.stdout[-1000:]}"
        )
    installed = Path(proc.stdout.strip().splitlines()[-1])
    if installed.resolve() != home.resolve() or not (home / "bin" / "opensearch").is_file():
        raise RuntimeError(f"{_FETCH_SCRIPT.name} installed into {installed}, expected {home}")
    return home


def _java_major(java_home: Path) -> int | None:
    if not (java_home / "bin" / "java").is_file():
        return None
    try:
        for line in (java_home / "release").read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                return int(line.split("=", 1)[1].strip('"').split(".")[0])
    except (OSError, ValueError):
        pass
    try:
        out = subprocess.run([str(java_home / "bin" / "java"), "-version"], capture_output=True, text=True).stderr
        return int(out.split('"')[1].split(".")[0])
    except (OSError, IndexError, ValueError):
        return None


def find_java_home() -> Path:
    """A JDK that OpenSearch 2.19 runs on (11..21, 17 preferred); never Java 24+."""
    ok = range(11, 22)
    for var in ("OPENSEARCH_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(var) and _java_major(Path(os.environ[var])) in ok:
            return Path(os.environ[var])
    jvms = [p for p in sorted(Path("/usr/lib/jvm").glob("*")) if p.is_dir() and not p.is_symlink()]
    for want in (17, 21, 11):
        for p in jvms:
            if _java_major(p) == want:
                return p
    java = shutil.which("java")
    if java:
        p = Path(java).resolve().parent.parent
        if _java_major(p) in ok:
            return p
    raise RuntimeError("no Java 11..21 found for OpenSearch 2.19 (Java 17 preferred, 24+ does not work); "
                       "install openjdk-17-jdk-headless or set OPENSEARCH_JAVA_HOME")


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) of the system user to run as when we are root (created if missing); None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(RUN_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", RUN_USER],
            check=True, capture_output=True,
        )
        pw = pwd.getpwnam(RUN_USER)
    return pw.pw_uid, pw.pw_gid


def _make_traversable(path: Path) -> None:
    """Give 'others' search (x) permission on `path` and every parent, so the run user can reach it."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(p, stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(name)
            if st.st_uid != uid or st.st_gid != gid:
                os.lchown(name, uid, gid)


def _tail(path: Path, chars: int = 6000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(none)"


class OpenSearchNode:
    """One local OpenSearch node whose state lives in `state_dir`.

    `home` is the install folder; None means `ensure_installed()` (only needed by `start()`: `stop()`,
    `is_running()` and `url` work from the state folder alone, from any process).
    """

    def __init__(self, home: Path | None, state_dir: Path, port: int | None = None, heap_mb: int = 512,
                 start_timeout: float = 180.0):
        self.home = Path(home).resolve() if home is not None else None
        self.state_dir = Path(state_dir).resolve()
        self.port = port
        self.heap_mb = heap_mb
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen | None = None

    # ---- state shared between processes -------------------------------------------------------------
    @property
    def pid_file(self) -> Path:
        return self.state_dir / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{CLUSTER_NAME}.log"

    @property
    def console_log(self) -> Path:
        return self.state_dir / "logs" / "console.log"

    def _state(self) -> dict:
        try:
            return json.loads((self.state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def pid(self) -> int | None:
        """The pid of this state folder's running OpenSearch process, if any."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        try:  # guard against a recycled pid: it must be an OpenSearch of this state folder
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return pid
        return pid if _MAIN_CLASS in cmdline and str(self.state_dir / "config") in cmdline else None

    def is_running(self) -> bool:
        return self.pid() is not None

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT of the node started from this state folder (RuntimeError if none ran)."""
        url = self._state().get("url")
        if not url:
            raise RuntimeError(f"no OpenSearch node was started in {self.state_dir}")
        return url

    def health(self, wait_for_status: str | None = None, timeout_s: int = 1) -> dict | None:
        """`_cluster/health` as a dict, or None when nothing answers (or the wait timed out)."""
        try:
            url = self.url
        except RuntimeError:
            return None
        query = f"?wait_for_status={wait_for_status}&timeout={timeout_s}s" if wait_for_status else ""
        try:
            with urllib.request.urlopen(f"{url}/_cluster/health{query}", timeout=timeout_s + 5) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):  # HTTPError 408 (wait timed out) included
            return None

    def is_healthy(self) -> bool:
        h = self.health(wait_for_status="yellow")
        return bool(h) and h.get("status") in ("yellow", "green")

    # ---- start / stop ---------------------------------------------------------------------------------
    def start(self) -> str:
        """Start the node (or reuse the one already running from this state folder); returns its URL.

        Raises RuntimeError, with the tail of the OpenSearch log, if it does not reach yellow in time.
        """
        if self.is_running():
            self._wait_healthy(proc=None)
            return self.url
        if self.home is None:
            self.home = ensure_installed()
        elif not (self.home / "bin" / "opensearch").is_file():
            self.home = ensure_installed(self.home.parent.parent)
        java_home = find_java_home()
        run_as = _run_as()

        for sub in ("config", "data", "logs", "tmp"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        http_port = self.port or free_port()
        transport_port = free_port()
        while transport_port == http_port:
            transport_port = free_port()
        self._write_config(http_port, transport_port)
        url = f"http://127.0.0.1:{http_port}"
        (self.state_dir / STATE_FILE).write_text(json.dumps(
            {"url": url, "http_port": http_port, "transport_port": transport_port, "home": str(self.home),
             "java_home": str(java_home), "heap_mb": self.heap_mb}, indent=2))
        self.pid_file.unlink(missing_ok=True)

        popen_user: dict = {}
        if run_as is not None:
            uid, gid = run_as
            _chown_tree(self.state_dir, uid, gid)
            _make_traversable(self.state_dir)
            _make_traversable(self.home)
            popen_user = {"user": uid, "group": gid, "extra_groups": []}

        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENSEARCH_", "JAVA_TOOL_OPTIONS"))}
        env.update({
            "OPENSEARCH_JAVA_HOME": str(java_home),
            "OPENSEARCH_PATH_CONF": str(self.state_dir / "config"),
            "OPENSEARCH_JAVA_OPTS": f"-Xms{self.heap_mb}m -Xmx{self.heap_mb}m",
            "OPENSEARCH_TMPDIR": str(self.state_dir / "tmp"),
            "HOME": str(self.state_dir),
        })
        with self.console_log.open("ab") as console:
            self._proc = subprocess.Popen(
                [str(self.home / "bin" / "opensearch")],
                cwd=self.state_dir, env=env, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True, **popen_user,
            )
        # bin/opensearch execs java, so this pid (and process group) is the server's.
        self.pid_file.write_text(str(self._proc.pid))
        try:
            self._wait_healthy(proc=self._proc)
        except BaseException:
            self.stop()
            raise
        return url

    def _wait_healthy(self, proc: subprocess.Popen | None) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"OpenSearch exited with code {proc.returncode} while starting\n"
                                   + self._logs())
            if proc is None and not self.is_running():
                raise RuntimeError("the running OpenSearch went away\n" + self._logs())
            if self.is_healthy():
                return
            time.sleep(0.5)
        raise RuntimeError(f"OpenSearch at {self._state().get('url')} did not reach status yellow within "
                           f"{self.start_timeout:.0f}s\n" + self._logs())

    def _logs(self) -> str:
        text = _tail(self.log_file, 200_000)
        causes = [ln for ln in text.splitlines() if "[ERROR]" in ln or ln.startswith("Caused by:")][-6:]
        summary = "--- errors ---\n" + "\n".join(ln[:400] for ln in causes) + "\n" if causes else ""
        return (summary + f"--- {self.log_file} (tail) ---\n{_tail(self.log_file)}\n"
                f"--- {self.console_log} (tail) ---\n{_tail(self.console_log, 3000)}")

    def _write_config(self, http_port: int, transport_port: int) -> None:
        assert self.home is not None
        conf = self.state_dir / "config"
        src = self.home / "config"
        for item in src.iterdir():
            if item.name == "opensearch.keystore":
                continue
            target = conf / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copyfile(item, target)
        logs, data = self.state_dir / "logs", self.state_dir / "data"
        # jvm.options: relative paths are resolved against the install folder (bin/opensearch cd's there):
        # point them into the state folder; the heap comes from OPENSEARCH_JAVA_OPTS.
        lines = []
        for line in (src / "jvm.options").read_text().splitlines():
            if line.strip() in ("-Xms1g", "-Xmx1g"):
                continue
            line = line.replace("-XX:HeapDumpPath=data", f"-XX:HeapDumpPath={data}")
            line = line.replace("-XX:ErrorFile=logs/", f"-XX:ErrorFile={logs}/")
            line = line.replace("file=logs/gc.log", f"file={logs}/gc.log").replace("filecount=32", "filecount=2")
            line = line.replace("-Xloggc:logs/", f"-Xloggc:{logs}/")
            lines.append(line)
        (conf / "jvm.options").write_text("\n".join(lines) + "\n")
        (conf / "opensearch.yml").write_text(
            "# Written by imgsearch_pipeline.stack.opensearch: a single local node on loopback.\n"
            f"cluster.name: {CLUSTER_NAME}\n"
            "node.name: imgsearch-node\n"
            f"path.data: {data}\n"
            f"path.logs: {logs}\n"
            "network.host: 127.0.0.1\n"
            f"http.port: {http_port}\n"
            f"transport.port: {transport_port}\n"
            "discovery.type: single-node\n"
            "cluster.routing.allocation.disk.threshold_enabled: false\n"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the node's process group, SIGKILL after `timeout`; a no-op when nothing runs."""
        pid = self.pid()
        if pid is not None:
            stop_group(pid, timeout=timeout)
            if self._proc is not None and self._proc.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=5)
            if pid_alive(pid):
                raise RuntimeError(f"OpenSearch (pid {pid}) did not stop")
        self._proc = None
        self.pid_file.unlink(missing_ok=True)
