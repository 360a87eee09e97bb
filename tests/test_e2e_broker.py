"""incrun through a broker a lab already runs: Celery over Redis and over RabbitMQ, and RQ over
Redis, each a real server the tests start on 127.0.0.1 (tests/brokers.py), with real `incrun
worker` processes. Faults are real: workers killed with SIGKILL or frozen with SIGSTOP, incrun
stopped by Ctrl-C and killed, brokers that refuse or are not there."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from broker_workers import ENGINES, IncrunWorkers, broker_server, needs, url_for
from brokers import _free_ports
from conftest import alive, incrun_env, poll, start

import incrun
from incrun.broker_urls import default_queue, versioned

# A job that says where it runs (its pid and its worker's, in pids/), takes a while, and
# writes its output in two steps (a half-written one would show), ending with its pid.
SLOW_RUNNER = r'''
import os, sys, time
inp = sys.argv[1]
seconds = float(open(inp).read() or 0)
os.makedirs("pids", exist_ok=True)
name = os.path.basename(inp)
open(os.path.join("pids", f"{name}.{os.getpid()}.{os.getppid()}"), "w").close()
with open(inp[:-4] + ".out", "w") as out:
    out.write("half ")
    out.flush()
    time.sleep(seconds)
    out.write(f"done by {os.getpid()}")
'''


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    """A broker for one engine, shared by the module's tests of that engine. Every test runs
    on each engine but where it says which: what is the same for both of Celery's brokers (the
    worker side, the coordinator's) is tested over one."""
    engine = request.param
    with broker_server(engine, tmp_path_factory.mktemp(engine)) as running:
        running.engine = engine
        yield running


@pytest.fixture
def url(server) -> str:
    return url_for(server.engine, server)


@pytest.fixture
def slow(project):
    project.write("runner.py", SLOW_RUNNER)
    return project


@pytest.fixture
def workers(slow, url, tmp_path):
    """`incrun worker` processes on the project's own queue, as started in its folder."""
    folder = tmp_path / "workers"
    folder.mkdir()
    started = IncrunWorkers(folder, url, project=slow.root)
    yield started
    started.stop_all()


def history(project) -> list[tuple]:
    with sqlite3.connect(project.root / ".incrun" / "state.db") as db:
        return db.execute("SELECT task, status, worker FROM history ORDER BY task").fetchall()


def started_jobs(project) -> list[tuple[str, int, int]]:
    """(input, job pid, its parent's: the worker's) of each job started so far."""
    folder = project.root / "pids"
    if not folder.exists():
        return []
    found = []
    for path in folder.iterdir():
        name, pid, parent = path.name.rsplit(".", 2)
        found.append((name, int(pid), int(parent)))
    return found


def queued(engine: str, url: str, project) -> int:
    """Messages waiting in the project's queue, on the broker itself."""
    name = versioned(default_queue(project.root), incrun.__version__)
    if engine == "rq":
        import redis
        from rq import Queue

        return Queue(name, connection=redis.Redis.from_url(url[len("rq+"):])).count
    import kombu

    with kombu.Connection(url) as connection:
        try:
            return kombu.Queue(name, channel=connection.default_channel).queue_declare(
                passive=True).message_count
        except connection.channel_errors:
            return 0


def leftovers(server) -> list[str]:
    """What a run may have left in the broker: its keys and reply queues (the workers' own
    keys, which say they live, are theirs)."""
    if server.engine == "celery-amqp":
        listed = subprocess.run(["rabbitmqctl", "list_queues", "-q", "name"],
                                env={**os.environ, **server.env}, capture_output=True,
                                text=True, timeout=60)
        return [line for line in listed.stdout.split() if line.startswith("incrun.reply.")]
    import redis

    client = redis.Redis.from_url(server.url)
    keys = [key.decode() for key in client.keys("incrun:*")
            if not key.startswith(b"incrun:worker:")]
    keys += [f"unacked:{tag}" for tag in client.hkeys("unacked")]
    keys += [key.decode() for key in client.keys("rq:job:*")]
    return keys


# -- jobs on the workers --------------------------------------------------------------------


def test_stale_jobs_run_on_the_workers_leave_nothing_and_a_rerun_contacts_no_one(
        slow, workers, url, server):
    workers.start("w1")
    workers.start("w2")
    slow.inputs(*(f"data/j{i}.inp" for i in range(6)), text="0.2")
    done = slow.run("--cluster", url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 workers, 2 jobs at once" in done.stdout
    outputs = sorted((slow.root / "data").glob("*.out"))
    assert len(outputs) == 6 and all(path.read_text().startswith("half done by")
                                     for path in outputs)
    assert {worker for _, _, worker in history(slow)} == {"w1", "w2"}
    assert leftovers(server) == [] and queued(server.engine, url, slow) == 0
    workers.stop_all()  # nothing is stale: the next run needs no broker
    again = slow.run("--cluster", url)
    assert again.returncode == 0 and "all 6 jobs up to date" in again.stdout
    for command in (["status"], ["--dry-run"], ["explain", "data/j0.inp"]):
        assert slow.run(*command, "--cluster", url).returncode == 0


def test_a_worker_killed_mid_job_is_noticed_and_its_job_runs_again_once(slow, workers, url,
                                                                       server):
    workers.start("w1")
    workers.start("w2")
    slow.inputs("data/long.inp", text="4")
    slow.inputs(*(f"data/s{i}.inp" for i in range(3)), text="0.1")
    run = start(slow, "--cluster", url, "--json")
    poll(lambda: any(name == "long.inp" for name, _, _ in started_jobs(slow)),
         what="the long job to start")
    _, long_pid, parent = next(job for job in started_jobs(slow) if job[0] == "long.inp")
    victim = workers.pids()[parent]  # the worker the job runs under: w1 or w2
    workers.kill(victim)
    killed = time.monotonic()
    poll(lambda: len([job for job in started_jobs(slow) if job[0] == "long.inp"]) == 2,
         timeout=30, what="the lost job to be sent again within 30 s")
    assert time.monotonic() - killed < 30
    out, err = run.communicate(timeout=90)
    assert run.returncode == 0, out + err
    events = [json.loads(line) for line in out.splitlines()]
    notices = [event["text"] for event in events if event["event"] == "notice"]
    assert any(f"{victim} went silent while running sweep:data/long.inp: sent again as "
               "attempt 2" in text for text in notices), notices
    assert not alive(long_pid)  # the dead worker's job did not run on
    _, again_pid, _ = next(job for job in started_jobs(slow)
                           if job[0] == "long.inp" and job[1] != long_pid)
    assert (slow.root / "data/long.out").read_text() == f"half done by {again_pid}"
    rows = history(slow)
    survivor = {"w1": "w2", "w2": "w1"}[victim]
    assert [row for row in rows if row[0] == "sweep:data/long.inp"] == [
        ("sweep:data/long.inp", "ok", survivor)]  # recorded once, by the survivor
    assert len(rows) == 4
    log = slow.root / ".incrun/logs/sweep/data/long.inp.log"  # the lost attempt's, then this
    assert log.read_text().endswith("--- attempt 2 of 2 ---\n")
    # What the dead worker held (Redis' unacknowledged message, RQ's abandoned job) is gone.
    assert leftovers(server) == [] and queued(server.engine, url, slow) == 0


@pytest.mark.parametrize("server", ["celery-redis"], indirect=True)
def test_a_frozen_workers_late_result_is_ignored(slow, workers, url, server):
    workers.start("w1")
    workers.start("w2")
    slow.inputs("data/long.inp", text="3")
    slow.inputs("data/keep.inp", text="25")  # keeps the run going past the late result
    run = start(slow, "--cluster", url, "--in-order")
    poll(lambda: {name for name, _, _ in started_jobs(slow)} == {"long.inp", "keep.inp"},
         what="both jobs to start")
    _, long_pid, parent = next(job for job in started_jobs(slow) if job[0] == "long.inp")
    frozen = workers.processes[workers.pids()[parent]]
    os.killpg(frozen.pid, signal.SIGSTOP)  # cut off: it says nothing, its job runs on
    try:
        poll(lambda: len([job for job in started_jobs(slow) if job[0] == "long.inp"]) == 2,
             timeout=40, what="the silent job to be sent again")
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)  # it wakes, and tells of the job it ran
    out, err = run.communicate(timeout=90)
    assert run.returncode == 0, out + err
    rows = history(slow)
    assert [row[:2] for row in rows] == [("sweep:data/keep.inp", "ok"),
                                         ("sweep:data/long.inp", "ok")]
    _, again_pid, _ = next(job for job in started_jobs(slow)
                           if job[0] == "long.inp" and job[1] != long_pid)
    assert (slow.root / "data/long.out").read_text() == f"half done by {again_pid}"


@pytest.mark.parametrize("server", ["celery-redis", "rq"], indirect=True)
def test_a_stale_worker_gets_no_job_and_is_named(slow, workers, url, server, tmp_path):
    old = tmp_path / "old-incrun"  # the same incrun, but another version
    shutil.copytree(Path(incrun.__file__).parent, old / "incrun")
    init = old / "incrun" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{incrun.__version__}"', '"0.0.1"'))
    workers.start("old", env={"PYTHONPATH": str(old)})
    slow.inputs("data/a.inp", "data/b.inp", text="0")
    alone = slow.run("--cluster", url)
    assert alone.returncode == 11, alone.stdout + alone.stderr
    words = f"stale worker {os.uname().nodename}: incrun 0.0.1, this run needs " \
            f"{incrun.__version__}"
    assert words in alone.stderr and len(alone.stderr.splitlines()) == 1
    assert not (slow.root / "data/a.out").exists()
    workers.start("new")
    done = slow.run("--cluster", url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{words} — restart it" in done.stdout
    assert {worker for _, _, worker in history(slow)} == {"new"}


@pytest.mark.parametrize("server", ["celery-redis"], indirect=True)
def test_an_edited_runner_takes_effect_at_once_on_the_same_workers(slow, workers, url, server):
    worker = workers.start("w1")
    slow.inputs("data/a.inp", text="0")
    assert slow.run("--cluster", url).returncode == 0
    slow.write("runner.py", SLOW_RUNNER.replace('"done by', '"edited, done by'))
    assert slow.run("--cluster", url).returncode == 0
    assert (slow.root / "data/a.out").read_text().startswith("half edited, done by")
    assert worker.poll() is None  # the same worker, not restarted


# -- stop means stop --------------------------------------------------------------------------


def test_ctrl_c_ends_the_remote_jobs_and_purges_the_queue(slow, workers, url, server):
    workers.start("w1")
    workers.start("w2")
    slow.inputs("data/a.inp", "data/b.inp", text="60")
    slow.inputs(*(f"data/q{i}.inp" for i in range(4)), text="0")
    run = start(slow, "--cluster", url, "--grace", "2", "--in-order")
    poll(lambda: len(started_jobs(slow)) == 2, what="two jobs to start")
    pids = [pid for _, pid, _ in started_jobs(slow)]
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, out + err
    poll(lambda: not any(alive(pid) for pid in pids), timeout=15,
         what="the remote jobs to end")
    assert queued(server.engine, url, slow) == 0  # nothing left to run after incrun went
    for process in workers.processes.values():  # they finish what they hold, then stop
        process.send_signal(signal.SIGTERM)
    for process in workers.processes.values():
        process.wait(60)
    assert len(started_jobs(slow)) == 2  # no queued job ran, before or after incrun went
    status = slow.run("status")
    assert "6 stale" in status.stdout and "interrupted" in status.stdout


@pytest.mark.parametrize("server", ["celery-redis", "rq"], indirect=True)
def test_a_timeout_ends_the_remote_job(slow, workers, url, server):
    workers.start("w1")
    slow.inputs("data/a.inp", text="60")
    done = slow.run("--cluster", url, "--timeout", "1", "--grace", "1")
    assert done.returncode == 1 and "timed out after 1s" in done.stdout
    pids = [pid for _, pid, _ in started_jobs(slow)]
    assert pids and not any(alive(pid) for pid in pids)


@pytest.mark.parametrize("server", ["celery-redis", "rq"], indirect=True)
def test_fail_fast_takes_back_what_has_not_started(slow, workers, url, server):
    workers.start("w1")
    slow.inputs("data/a.inp", text="oops")  # fails at once: not a number
    slow.inputs(*(f"data/q{i}.inp" for i in range(4)), text="0")
    done = slow.run("--cluster", url, "-x", "--in-order")
    assert done.returncode == 1
    assert [name for name, _, _ in started_jobs(slow)] == []  # a.inp failed before its line
    assert not any((slow.root / f"data/q{i}.out").exists() for i in range(4))
    assert queued(server.engine, url, slow) == 0


@pytest.mark.parametrize("server", ["celery-redis", "rq"], indirect=True)
def test_incrun_killed_its_remote_jobs_end_as_its_lease_lapses(slow, workers, url, server):
    workers.start("w1")
    slow.inputs("data/a.inp", text="60")
    slow.inputs(*(f"data/q{i}.inp" for i in range(3)), text="0")
    run = start(slow, "--cluster", url, "--in-order")
    poll(lambda: len(started_jobs(slow)) == 1, what="the long job to start")
    pids = [pid for _, pid, _ in started_jobs(slow)]
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(10)
    poll(lambda: not any(alive(pid) for pid in pids), timeout=25,
         what="the remote job to end once incrun's lease lapsed")
    poll(lambda: queued(server.engine, url, slow) == 0, timeout=30,
         what="the worker to drop the dead run's queued jobs")
    assert len(started_jobs(slow)) == 1  # dropped, not run
    assert "4 stale" in slow.run("status").stdout


# -- the same experience ----------------------------------------------------------------------


@pytest.mark.parametrize("server", ["celery-redis", "rq"], indirect=True)
def test_json_junit_report_and_history_name_the_workers(slow, workers, url, server, tmp_path):
    workers.start("w1")
    workers.start("w2")
    slow.inputs(*(f"data/j{i}.inp" for i in range(4)), text="0.3")
    junit = tmp_path / "junit.xml"
    done = slow.run("--cluster", url, "-n", "1", "--json", "--junit", str(junit))
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    started = [event for event in events if event["event"] == "job_started"]
    assert len(started) == 4 and {event["worker"] for event in started} <= {"w1", "w2"}
    assert junit.read_text().count("<testcase") == 4
    with sqlite3.connect(slow.root / ".incrun" / "state.db") as db:
        spans = sorted(db.execute("SELECT started, ended FROM history").fetchall())
    assert all(later[0] >= earlier[1] - 0.05 for earlier, later in zip(spans, spans[1:]))
    assert slow.run("report").returncode == 0
    page = (slow.root / ".incrun" / "report.html").read_text()
    assert all(f">{name}<" in page for name in {w for _, _, w in history(slow)})


@pytest.mark.parametrize("server", ["celery-redis"], indirect=True)
def test_flower_shows_the_runs_tasks_by_name(slow, workers, url, server, tmp_path):
    pytest.importorskip("flower")
    (port,) = _free_ports(1)
    log = open(tmp_path / "flower.log", "w")
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "--broker", url, "flower", "--address=127.0.0.1",
         f"--port={port}"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=incrun_env({"FLOWER_UNAUTHENTICATED_API": "true"}))
    try:
        def tasks() -> dict | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks",
                                            timeout=5) as answer:
                    return json.load(answer)
            except OSError:
                return None

        poll(lambda: tasks() is not None, timeout=60, what="flower to answer")
        workers.start("w1")
        slow.inputs("data/a.inp", "data/b.inp", text="0")
        assert slow.run("--cluster", url).returncode == 0
        def jobs() -> list[dict]:
            return [task for task in tasks().values() if task.get("name") == "incrun.job"]

        poll(lambda: [task.get("state") for task in jobs()] == ["SUCCESS"] * 2,
             timeout=30, what="flower to see both jobs succeed")
        assert sorted(task["args"] for task in jobs()) == ["['sweep:data/a.inp']",
                                                           "['sweep:data/b.inp']"]
        assert {task["worker"] for task in jobs()} == {f"w1@{os.uname().nodename}"}
    finally:
        os.killpg(flower.pid, signal.SIGTERM)
        flower.wait(30)
        log.close()


def _hidden_project(slow) -> list[str]:
    """A wrapper whose worker sees an empty folder where the project is: no shared files."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to hide the project from a worker")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount -t tmpfs none "{slow.root}" && exec "$0" "$@"']


@pytest.mark.parametrize("server", ["celery-redis", "rq"], indirect=True)
def test_a_worker_blind_to_the_project_stops_the_run_and_stage_sends_the_files(
        slow, workers, url, server):
    workers.project = None  # started where the project is hidden: its queue is named
    workers.queue = default_queue(slow.root)
    workers.start("blind", wrap=_hidden_project(slow))
    slow.inputs("data/a.inp", "data/b.inp", text="0")
    done = slow.run("--cluster", url)
    assert done.returncode == 11
    assert "cannot read the project folder" in done.stderr and "--stage" in done.stderr
    staged = slow.run("--cluster", url, "--stage")
    assert staged.returncode == 0, staged.stdout + staged.stderr
    assert (slow.root / "data/a.out").read_text().startswith("half done by")
    assert not (slow.root / "pids").exists()  # the jobs ran elsewhere: what they left stays


# -- bad input, and secrets ---------------------------------------------------------------------


@pytest.mark.parametrize("server", ["celery-amqp", "rq"], indirect=True)
def test_no_worker_on_the_queue_is_said_after_a_few_seconds(slow, url, server):
    slow.inputs("data/a.inp", text="0")
    began = time.monotonic()
    done = slow.run("--cluster", url)
    assert done.returncode == 11 and len(done.stderr.splitlines()) == 1, done.stderr
    assert f"no worker listens on queue {default_queue(slow.root)}" in done.stderr
    assert "incrun worker" in done.stderr  # how to start one
    assert time.monotonic() - began < 30
    assert slow.run("status").stdout.startswith("0 up to date, 1 stale")


def test_a_broker_that_refuses_is_one_line_and_records_nothing(slow, server):
    if server.engine == "celery-amqp":
        closed = f"amqp://incrun:nope@127.0.0.1:{_free_ports(1)[0]}//"
        wrong = re.sub(r":[^:@/]+@", ":wrongpass@", server.url)
    else:
        prefix = "rq+" if server.engine == "rq" else ""
        closed = f"{prefix}redis://127.0.0.1:{_free_ports(1)[0]}/0"
        wrong = None  # this Redis has no password; the secrets test has one
    slow.inputs("data/a.inp", text="0")
    for bad in filter(None, (closed, wrong)):
        done = slow.run("--cluster", bad)
        assert done.returncode == 11, done.stdout + done.stderr
        assert len(done.stderr.splitlines()) == 1 and "cannot reach the broker" in done.stderr
        assert "wrongpass" not in done.stdout + done.stderr
    worker = slow.run("worker", "--broker", closed)
    assert worker.returncode == 11 and len(worker.stderr.splitlines()) == 1, worker.stderr
    assert "cannot reach the broker" in worker.stderr
    assert slow.run("status").stdout.startswith("0 up to date, 1 stale")


@pytest.mark.parametrize("engine", ["celery-redis", "rq"])
def test_celery_or_rq_not_installed_names_the_extra(slow, engine, tmp_path):
    module = "rq" if engine == "rq" else "celery"
    fake = tmp_path / f"no-{module}"
    (fake / module).mkdir(parents=True)
    (fake / module / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name='{module}')\n")
    slow.inputs("data/a.inp", text="0")
    url = ("rq+" if engine == "rq" else "") + "redis://127.0.0.1:9/0"
    done = slow.run("--cluster", url, env={"PYTHONPATH": str(fake)})
    assert done.returncode == 12 and f"pip install 'incrun[{engine.split('-')[0]}]'" \
        in done.stderr, done.stderr
    worker = slow.run("worker", "--broker", url, env={"PYTHONPATH": str(fake)})
    assert worker.returncode == 12 and f"incrun[{module}]" in worker.stderr
    assert slow.run("status").stdout.startswith("0 up to date, 1 stale")


def test_a_broker_password_is_never_shown_and_may_come_from_the_environment(
        slow, workers, server, tmp_path):
    if server.engine == "celery-amqp":
        url, password = url_for(server.engine, server), server.password
    else:  # a Redis of its own, with a password
        needs(server.engine)
        from brokers import RedisServer

        password = "s3cret-redis-pw"
        guarded = RedisServer(tmp_path / "guarded", password=password).start()
        url = url_for(server.engine, guarded)
        workers.url = url
    try:
        workers.start("w1")
        # Each job prints its environment into its log: the worker's URL is not in it.
        slow.write("runner.py", "import os; print(dict(os.environ))\n" + SLOW_RUNNER)
        slow.write("incrun.toml", 'cluster = "env:INCRUN_BROKER"\n')
        slow.inputs("data/a.inp", "data/b.inp", text="0")
        slow.inputs("data/bad.inp", text="oops")
        junit = tmp_path / "junit.xml"
        shown = []
        for extra in (["--json"], ["--junit", str(junit)]):
            done = slow.run(*extra, env={"INCRUN_BROKER": url})
            assert done.returncode == 1, done.stdout + done.stderr
            shown += [done.stdout, done.stderr]
            slow.run("forget", "--all")
        assert slow.run("report").returncode == 0
        wrong = url.replace(password, "not-" + password)
        refused = slow.run("--cluster", wrong)
        assert refused.returncode == 11
        shown += [refused.stdout, refused.stderr, junit.read_text()]
        assert "***@" in "".join(shown)  # the URL shown, masked
        stored = [path.read_bytes().decode("utf-8", "replace")
                  for path in (slow.root / ".incrun").rglob("*") if path.is_file()]
        assert not [text for text in shown + stored if password in text]
    finally:
        if server.engine != "celery-amqp":
            guarded.stop()


MARKER_CODE = "import pathlib; pathlib.Path({path!r}).write_text('ran')"


class _Evil:
    """Pickled, it runs code when loaded: what a worker must never load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (MARKER_CODE.format(path=str(self.marker)),))


@pytest.mark.parametrize("server", ["celery-redis", "rq"], indirect=True)
def test_nothing_read_from_the_broker_runs_code_but_incrun_jobs(slow, workers, url, server,
                                                                tmp_path):
    workers.start("w1")
    name = versioned(default_queue(slow.root), incrun.__version__)
    pickled, named = tmp_path / "pickled-ran", tmp_path / "named-ran"
    if server.engine == "rq":
        import redis
        from rq import Queue
        from rq.serializers import JSONSerializer

        client = redis.Redis.from_url(server.url)
        Queue(name, connection=client).enqueue(exec, MARKER_CODE.format(path=str(pickled)))
        Queue(name, connection=client, serializer=JSONSerializer).enqueue(
            "builtins.exec", MARKER_CODE.format(path=str(named)))  # JSON, naming another function
    else:
        import kombu

        with kombu.Connection(url) as connection:
            connection.Producer().publish(
                _Evil(pickled), routing_key=name, serializer="pickle",
                headers={"task": "incrun.job", "id": "evil", "lang": "py"},
                declare=[kombu.Queue(name, kombu.Exchange(name), routing_key=name)])
    slow.inputs("data/a.inp", text="0")  # a job of incrun's after them: they were taken first
    done = slow.run("--cluster", url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not pickled.exists() and not named.exists()
    assert workers.processes["w1"].poll() is None
    assert queued(server.engine, url, slow) == 0


@pytest.mark.parametrize("server", ["celery-redis", "rq"], indirect=True)
def test_calls_run_on_the_workers_and_hand_written_tasks_here(project, server, url, tmp_path):
    from test_e2e_dask import CALLED, DODO

    workers = IncrunWorkers(tmp_path / "workers", url, project=project.root)
    (tmp_path / "workers").mkdir()
    (project.root / "runner.py").unlink()
    project.write("sims.py", CALLED)
    project.write("dodo.py", DODO)
    project.inputs("data/a.inp", "data/b.inp", text="x")
    try:
        worker = workers.start("w1")
        done = project.run("--cluster", url)
    finally:
        workers.stop_all()
    assert done.returncode == 0, done.stdout + done.stderr
    assert (project.root / "notes.txt").read_text() == "written here"
    made_by = {(project.root / f"data/{name}.out").read_text().split()[-1] for name in "ab"}
    assert str(os.getpid()) not in made_by and str(worker.pid) not in made_by  # own Pythons
    ran_on = dict((task, worker) for task, _, worker in history(project))
    assert ran_on["sim:data/a.inp"] == "w1" and ran_on["notes"] != "w1"


@pytest.mark.parametrize("server", ["rq"], indirect=True)
def test_rq_jobs_have_incruns_timeout_not_rqs_180_seconds(server, url, tmp_path):
    import queue

    from rq.job import Job

    from incrun.executors.contract import JobSpec
    from incrun.executors.rq_broker import RQLink

    link = RQLink(url, "timeouts", "run1")
    link.open(queue.SimpleQueue())
    try:
        for number, timeout in ((1, None), (2, 3600.0)):
            spec = JobSpec(f"sweep:{number}", ("true",), (), "log", timeout)
            link.send({"run": "run1", "id": f"run1-{number}", "spec": spec.to_json()}, spec)
        untimed, timed = (Job.fetch(f"run1-{number}", connection=link._client,
                                    serializer=None) for number in (1, 2))
        assert untimed.timeout == -1  # no timeout: RQ never ends it
        assert 3600 < timed.timeout < 3700  # incrun ends it at 3600 s, RQ only after
    finally:
        link.take_back(["run1-1", "run1-2"])
        link.close()
