"""Real message brokers for the tests: a redis-server and a RabbitMQ node of their own, on
127.0.0.1 and free ports, with every file under a temp folder and a password of their own.
Needs Debian's redis-server and rabbitmq-server (.ci/run installs them); `why_not(kind)` says
what is missing."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

RABBIT_HOME = Path("/usr/lib/rabbitmq/bin")  # Debian's; /usr/sbin's wrapper su's to rabbitmq


def why_not(kind: str) -> str | None:
    """Why a broker of `kind` ("redis" or "rabbitmq") cannot be started here; None if it can."""
    if kind == "redis":
        if shutil.which("redis-server") is None:
            return "no redis-server here (.ci/run installs Debian's redis-server)"
        return None
    if kind == "rabbitmq":
        missing = [name for name in ("erl", "epmd") if shutil.which(name) is None]
        if not (RABBIT_HOME / "rabbitmq-server").exists():
            missing.insert(0, "rabbitmq-server")
        if missing:
            return (f"no {', '.join(missing)} here "
                    "(.ci/run installs Debian's rabbitmq-server)")
        if os.geteuid() != 0:
            return "RabbitMQ's node runs here as root only (Debian's files are root's)"
        # kombu replaces its own module once imported (no __spec__ then): in sys.modules is
        # as good as found.
        if "kombu" not in sys.modules and importlib.util.find_spec("kombu") is None:
            return "no kombu here, to tell when RabbitMQ is up"
        return None
    raise ValueError(f"no broker {kind!r}: redis or rabbitmq")


def _free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 (held together while chosen, so none repeats)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _end(process: subprocess.Popen, grace: float) -> None:
    """TERM `process`, KILL it after `grace` s, and reap it."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _processes() -> dict[int, tuple[str, str, int, int, str]]:
    """Every process now: pid → (name, state, parent, process group, start time)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            fields = text[text.rindex(")") + 2:].split()
            table[int(stat.parent.name)] = (text[text.index("(") + 1:text.rindex(")")],
                                            fields[0], int(fields[1]), int(fields[2]),
                                            fields[19])
    return table


def _family(process: subprocess.Popen) -> dict[int, tuple[str, str]]:
    """The living processes `process` started: its process group and all its descendants,
    which may have left the group (erlang's erl_child_setup and port programs call setsid):
    pid → (name, start time). Empty once `process` is reaped (its pid may be reused then)."""
    if process.poll() is not None:
        return {}
    table = _processes()
    found, todo = {}, [process.pid]
    while todo:
        pid = todo.pop()
        todo += [child for child, row in table.items() if row[2] == pid]
        found[pid] = table.get(pid)
    found.update({pid: row for pid, row in table.items() if row[3] == process.pid})
    return {pid: (row[0], row[4]) for pid, row in found.items() if row and row[1] != "Z"}


def _living(known: dict[int, tuple[str, str]]) -> list[int]:
    """Which of `known` still run (a zombie has ended; a pid with another start time is another
    process)."""
    table = _processes()
    return [pid for pid, (_, start) in known.items()
            if pid in table and table[pid][1] != "Z" and table[pid][4] == start]


def _end_family(process: subprocess.Popen, grace: float) -> None:
    """TERM the process group of `process` (started with a session of its own); after `grace` s
    KILL whatever of its family, as seen while it ran, still runs; reap it."""
    known = _family(process)
    if process.poll() is None:  # once reaped, its pid (and group id) may be another's
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        known.update(_family(process))
        if process.poll() is not None and not _living(known):
            return
        time.sleep(0.05)
    for pid in _living(known):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(10)
    deadline = time.monotonic() + 10
    while _living(known) and time.monotonic() < deadline:
        time.sleep(0.05)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


class RedisServer:
    """redis-server on 127.0.0.1:`port` and a Unix socket in `folder`, nothing saved to disk."""

    def __init__(self, folder: Path, password: str | None = None):
        self.folder = Path(folder)
        self.password = password
        self.port = _free_ports(1)[0]
        self.socket_path = self.folder / "redis.sock"
        self.log = self.folder / "redis.log"
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket_path)) > 100:  # sun_path holds 108 bytes
            raise ValueError(f"a Unix socket path this long does not fit: {self.socket_path}")
        argv = [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
                "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "",
                "--appendonly", "no", "--unixsocket", str(self.socket_path),
                "--unixsocketperm", "700", "--daemonize", "no", "--logfile", str(self.log)]
        if self.password:
            argv += ["--requirepass", self.password]
        self._process = subprocess.Popen(argv, cwd=self.folder, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not come up:\n{_tail(self.log)}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        """A PING on the socket gets PONG, or NOAUTH when a password is asked: it is up."""
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(2)
            try:
                client.connect(str(self.socket_path))
                client.sendall(b"PING\r\n")
                reply = client.recv(64)
            except OSError:
                return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def stop(self) -> None:
        if self._process is not None:
            _end(self._process, grace=10)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class RabbitServer:
    """A RabbitMQ node of its own (name, ports, epmd, cookie, database, logs all under `folder`)
    with one user, `user`/`password`, on the vhost `/`, and no plugins. A start takes some 4-8 s
    (`startup_seconds`)."""

    def __init__(self, folder: Path, password: str | None = None, user: str = "incrun"):
        self.folder = Path(folder)
        self.user = user
        self.password = password or secrets.token_hex(12)
        self.port, self.dist_port, self.epmd_port = _free_ports(3)
        self.node = f"incrun-test-{secrets.token_hex(4)}@localhost"
        self.log = self.folder / "rabbitmq-server.out"
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen | None = None
        self._epmd: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        """The process (and process group) of the node's rabbitmq-server script."""
        return self._process.pid if self._process else None

    def processes(self) -> dict[int, str]:
        """The node's running processes now (script, beam.smp, its helpers): pid → name."""
        if self._process is None:
            return {}
        return {pid: name for pid, (name, _) in _family(self._process).items()}

    @property
    def epmd_pid(self) -> int | None:
        return self._epmd.pid if self._epmd else None

    @property
    def url(self) -> str:
        return (f"amqp://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@127.0.0.1:{self.port}//")

    @property
    def env(self) -> dict:
        """The node's environment: what rabbitmqctl needs too, to reach this node."""
        folder = self.folder
        return {
            "HOME": str(folder),  # the erlang cookie: folder/.erlang.cookie
            "RABBITMQ_NODENAME": self.node, "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port), "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),  # not /etc's
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_PID_FILE": str(folder / "rabbitmq.pid"),
            # our epmd, not one erl would start (and leave) itself; distribution on loopback
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self) -> RabbitServer:
        started = time.monotonic()
        folder = self.folder
        for name in ("mnesia", "log"):
            (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / "rabbitmq-env.conf").write_text("")
        (folder / "enabled_plugins").write_text("[].\n")
        (folder / "rabbitmq.conf").write_text("\n".join([
            f"default_user = {self.user}", f"default_pass = {self.password}",
            "default_vhost = /", "default_user_tags.administrator = true",
            "default_permissions.configure = .*", "default_permissions.read = .*",
            "default_permissions.write = .*", "loopback_users = none",
            "log.console = false", "log.file.level = info",
            "disk_free_limit.absolute = 1MB", ""]))
        env = {**os.environ, **self.env}
        try:
            self._start_epmd(env)
            with open(self.log, "wb") as out:
                self._process = subprocess.Popen(
                    [str(RABBIT_HOME / "rabbitmq-server")], cwd=folder, env=env,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)
            self._wait_ready(time.monotonic() + 60)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _start_epmd(self, env: dict) -> None:
        self._epmd = subprocess.Popen(
            [shutil.which("epmd") or "epmd", "-port", str(self.epmd_port),
             "-address", "127.0.0.1"], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not _accepts(self.epmd_port):
            if self._epmd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"epmd did not listen on port {self.epmd_port}")
            time.sleep(0.02)

    def _wait_ready(self, deadline: float) -> None:
        """Until an AMQP connection with our user works (the listener opens late in boot)."""
        import kombu  # only the tests that start a RabbitMQ need it

        problem: Exception | str = "no AMQP listener"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if _accepts(self.port):
                try:
                    with kombu.Connection(self.url, connect_timeout=2) as connection:
                        connection.ensure_connection(max_retries=1)
                    return
                except Exception as error:  # still booting: refused, reset, access refused
                    problem = error
            time.sleep(0.2)
        logs = "\n".join(_tail(path) for path in (self.log, *sorted(
            (self.folder / "log").glob("*.log"))))
        raise RuntimeError(f"RabbitMQ did not come up ({problem!r}); see {self.folder}:\n"
                           f"{logs}")

    def stop(self) -> None:
        """The node (script, beam.smp and all it started), then our epmd."""
        if self._process is not None:
            _end_family(self._process, grace=20)
        if self._epmd is not None:
            _end(self._epmd, grace=5)

    def __enter__(self) -> RabbitServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
