"""The brokers the tests start (see brokers): each answers with its password only, refuses a
wrong one, and is gone, all its processes, once stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
from brokers import RabbitServer, RedisServer, why_not


def _running(pid: int) -> bool:
    """A process of that pid runs (a zombie has ended: only its reaping is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _group(pgid: int) -> list[int]:
    """The running processes of a process group."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.mark.skipif(why_not("redis") is not None, reason=str(why_not("redis")))
def test_redis_server_answers_its_password_only_and_stops(tmp_path):
    redis = pytest.importorskip("redis")
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    server = RedisServer(tmp_path, password="s3cret")
    with server:
        assert server.url == f"redis://:s3cret@127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        on_socket = redis.Redis(unix_socket_path=str(server.socket_path), password="s3cret")
        assert on_socket.get("greeting") == b"hello"
        once = Retry(NoBackoff(), 0)  # redis-py retries a refusal 3 times, with backoff
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port, password="wrong",
                        retry=once).get("greeting")
        assert _running(server.pid)
    assert not _running(server.pid)
    assert not list(tmp_path.glob("*.rdb"))  # nothing saved


@pytest.mark.skipif(why_not("rabbitmq") is not None, reason=str(why_not("rabbitmq")))
def test_rabbit_server_answers_its_password_only_and_stops(tmp_path):
    amqp = pytest.importorskip("amqp")
    kombu = pytest.importorskip("kombu")

    server = RabbitServer(tmp_path, password="s3cret")
    with server:
        print(f"RabbitMQ started in {server.startup_seconds:.1f} s")
        assert server.url == f"amqp://incrun:s3cret@127.0.0.1:{server.port}//"
        with kombu.Connection(server.url) as connection:
            queue = connection.SimpleQueue("incrun-test")
            queue.put({"hello": "rabbit"})
            message = queue.get(timeout=10)
            assert message.payload == {"hello": "rabbit"}
            message.ack()
            queue.close()
        wrong = server.url.replace(":s3cret@", ":wrong@")
        with pytest.raises(amqp.exceptions.AccessRefused), kombu.Connection(wrong) as refused:
            refused.ensure_connection(max_retries=1)
        processes = server.processes()
        assert "beam.smp" in processes.values(), processes
        assert server.pid in _group(server.pid)
        assert _running(server.epmd_pid)
    assert not _group(server.pid)
    assert not [pid for pid in processes if _running(pid)], processes
    assert not _running(server.epmd_pid)
    assert list((tmp_path / "mnesia").iterdir())  # the node's database is in its folder
