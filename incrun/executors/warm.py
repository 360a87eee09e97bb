"""Warm starts: a worker process that has imported what a Python script imports at top level
forks a child for each of the script's jobs, which runs it as `__main__`, so that no job pays
the interpreter's start or those imports again (`warm = true`, `--warm`).

A child must be indistinguishable from `python SCRIPT ARGS` in what it writes, its exit code and
its log, or the script does not run warm: a script that cannot be read as Python, an import that
fails or prints, a thread started by an import (a fork copies it half-alive: a lock it held stays
held forever), or a system other than Linux, each turn the script's jobs cold, with one reason.
BLAS and OpenMP pools are held to one thread while the imports run, unless the project's
environment sets their size, so that numpy and its kin start none. A module of the project the
script imported, or the script itself, changed since: the worker restarts, fresh."""

from __future__ import annotations

import ast
import atexit
import builtins
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from contextlib import contextmanager
from importlib.machinery import SourceFileLoader

# fork() without exec is safe on Linux; macOS's system libraries may crash in such a child.
FORKS_SAFELY = sys.platform.startswith("linux")
# Each caps a thread pool that numpy, scipy or numexpr start when first imported.
POOL_SIZES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def script_of(argv) -> str | None:
    """The script of a `{python} SCRIPT ARGS…` command (this very interpreter, no options)."""
    if len(argv) >= 2 and argv[0] == sys.executable and not argv[1].startswith("-"):
        return argv[1]
    return None


def top_level_imports(source: bytes, path: str) -> tuple[list[str], list[str]]:
    """The modules a script imports at its top level, read (not run): those it must import,
    and those under a top-level `try`, which it expects may fail. Raises SyntaxError."""
    required: list[str] = []
    optional: list[str] = []
    for node in ast.parse(source, path).body:
        if isinstance(node, ast.Try):
            optional.extend(_imported(node.body))
        else:
            required.extend(_imported([node]))
    return required, optional


def _imported(statements) -> list[str]:
    names: list[str] = []
    for node in statements:
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module != "__future__":
                names.append(node.module)
    return names


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino


def _open_fds() -> set[int]:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return {int(name) for name in os.listdir(folder)}
        except OSError:
            continue
    return set()


def _threads() -> int:
    """The threads of this process, the interpreter's own and any a library started."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


class Cold(Exception):
    """Why a script's jobs cannot start warm."""


class WarmStarts:
    """One worker's warm scripts: what each imported, the files to watch for a change, the
    file descriptors those imports opened (a child keeps them; the worker's own it closes)."""

    def __init__(self, root: str, base_path: list[str]):
        self.root = root
        self.base_path = base_path  # sys.path as a plain `python SCRIPT` has it, but its [0]
        self.prepared: dict[str, str | None] = {}  # script -> None (warm), or why it is cold
        self.watched: dict[str, tuple | None] = {}  # file -> its stamp when imported
        self.kept_fds: set[int] = set()

    def prepare(self, script: str) -> str | None:
        """Import what `script` imports, once; None if its jobs may start warm, else why not."""
        if script not in self.prepared:
            try:
                self._preload(script)
                self.prepared[script] = None
            except Cold as reason:
                self.prepared[script] = str(reason)
        return self.prepared[script]

    def changed(self) -> str | None:
        """A file the warm imports came from that changed since: the worker must restart."""
        for path, stamp in self.watched.items():
            if _stamp(path) != stamp:
                return path
        return None

    def _preload(self, script: str) -> None:
        if not FORKS_SAFELY:
            raise Cold("warm starts need Linux (fork without exec)")
        path = os.path.abspath(script)
        try:
            with open(path, "rb") as stream:
                required, optional = top_level_imports(stream.read(), path)
        except OSError as error:
            raise Cold(f"cannot read {script}: {error.strerror}") from None
        except (SyntaxError, ValueError) as error:
            raise Cold(f"{script} cannot be read as Python ({type(error).__name__}: "
                       f"{error})") from None
        self.watched[path] = _stamp(path)
        before_modules, before_fds = set(sys.modules), _open_fds()
        with _as_script(path, self.base_path), _pools_held(), _output_caught() as printed:
            for name in required:
                _import(name, script)
            for name in optional:
                try:
                    __import__(name)
                except Exception:  # noqa: BLE001 (the script itself expects this may fail)
                    pass
        if printed():
            raise Cold(f"importing what {script} imports prints output, which every job's "
                       "log must show")
        threads = _threads()
        if threads > 1:
            raise Cold(f"importing what {script} imports started {threads - 1} "
                       "thread(s): a fork would copy them half-alive")
        self.kept_fds |= _open_fds() - before_fds
        for name in set(sys.modules) - before_modules:
            self._watch(sys.modules[name])

    def _watch(self, module) -> None:
        """A module of the project's own (not the interpreter's or an installed package's)."""
        file = getattr(module, "__file__", None)
        if not file:
            return
        file = os.path.abspath(file)
        inside = file.startswith(self.root + os.sep)
        installed = any(file.startswith(prefix + os.sep)
                        for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix})
        if inside and not installed:
            self.watched[file] = _stamp(file)

    def fork(self, argv, cwd: str, env: dict[str, str] | None, output: int) -> ForkedJob:
        """Start a job of a prepared script in a forked child of this worker."""
        script, *args = argv[1:]
        env = dict(os.environ) if env is None else env
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _become_job(output, self.kept_fds, cwd, env)
                code = run_as_main(script, args, self.base_path)
                if code < 0:  # ended by a signal, as Python ends on an uncaught Ctrl-C
                    signal.signal(-code, signal.SIG_DFL)
                    os.kill(os.getpid(), -code)
            finally:
                os._exit(code & 0xFF)
        return ForkedJob(pid)


def _import(name: str, script: str) -> None:
    try:
        __import__(name)
    except BaseException as error:  # noqa: B036 (SystemExit at import too)
        text = str(error).strip().splitlines()
        raise Cold(f"importing {name} for {script} failed ({type(error).__name__}"
                   f"{': ' + text[0] if text else ''})") from None


@contextmanager
def _as_script(path: str, base_path: list[str]):
    """sys.path and sys.argv as `python SCRIPT` has them, while its imports run."""
    saved = list(sys.path), list(sys.argv)
    sys.path[:] = [os.path.dirname(os.path.realpath(path)), *base_path]
    sys.argv[:] = [path]
    try:
        yield
    finally:
        sys.path[:], sys.argv[:] = saved


@contextmanager
def _pools_held():
    """Thread pools held to one thread while the imports run (unless the project sets their
    size): with a pool of one, OpenBLAS and OpenMP start no thread. The jobs' own environment
    is as it was."""
    added = [name for name in POOL_SIZES if name not in os.environ]
    for name in added:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextmanager
def _output_caught():
    """What the imports write to stdout or stderr goes to a file of its own; `printed()`, once
    they ran, says whether they wrote anything."""
    sys.stdout.flush()
    sys.stderr.flush()
    size = 0
    with tempfile.TemporaryFile() as caught:
        saved = os.dup(1), os.dup(2)
        os.dup2(caught.fileno(), 1)
        os.dup2(caught.fileno(), 2)
        try:
            yield lambda: size > 0
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
            size = os.fstat(caught.fileno()).st_size


def _become_job(output: int, kept_fds: set[int], cwd: str, env: dict[str, str]) -> None:
    """In the child: a process group of its own, the signals as a new Python has them, stdin
    empty, stdout and stderr to the job's output, none of the worker's files, the job's folder
    and environment; a fresh seed for numpy's global random numbers, as a new process has."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    empty = os.open(os.devnull, os.O_RDONLY)
    os.dup2(empty, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    for fd in _open_fds() - kept_fds - {0, 1, 2}:
        try:
            os.close(fd)
        except OSError:
            pass
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def run_as_main(script: str, args: list[str], base_path: list[str]) -> int:
    """Run the script as `python SCRIPT ARGS` would, to its exit code, its end as a Python's:
    uncaught errors shown as Python shows them, threads joined, exit handlers run."""
    path = os.path.abspath(script)
    sys.argv[:] = [script, *args]
    sys.path[:] = [os.path.dirname(os.path.realpath(path)), *base_path]
    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=path, __builtins__=builtins, __cached__=None,
                         __loader__=SourceFileLoader("__main__", path))
    sys.modules["__main__"] = main
    code = 1
    try:
        code = _run_code(path, main)
    finally:
        _finalize()
    return code


def _run_code(path: str, main: types.ModuleType) -> int:
    try:
        with open(path, "rb") as stream:
            source = stream.read()
    except OSError as error:
        print(f"{sys.executable}: can't open file {path!r}: [Errno {error.errno}] "
              f"{error.strerror}", file=sys.stderr)
        return 2
    try:
        exec(compile(source, path, "exec", dont_inherit=True), main.__dict__)
    except SystemExit as exit_:
        sys.stdout.flush()  # as Python does, before it says why
        return _exit_code(exit_.code)
    except BaseException as error:  # noqa: B036 (as Python shows an uncaught error)
        sys.stdout.flush()
        # Our own frame is the first: the script's is the next one, as Python shows it.
        tb = error.__traceback__.tb_next if error.__traceback__ is not None else None
        sys.excepthook(type(error), error.with_traceback(tb), tb)
        if isinstance(error, KeyboardInterrupt):
            return -signal.SIGINT  # Python ends by the signal itself
        return 1
    return 0


def _exit_code(code) -> int:
    """sys.exit's argument as Python's exit code: None 0, a number itself, else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _finalize() -> None:
    """What Python does at its exit: wait for the threads left running, run exit handlers,
    flush the streams."""
    try:
        threading._shutdown()
    except Exception:  # noqa: BLE001
        pass
    try:
        atexit._run_exitfuncs()
    except Exception:  # noqa: BLE001
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 (a closed stream, as Python ignores it)
            pass


class ForkedJob:
    """A forked child as a Popen is seen: its pid (which leads its group), poll and wait."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if timeout is None:
            if self.poll() is None:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(min(0.01, remaining))
        return self.returncode
