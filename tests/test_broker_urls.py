"""A broker's URL as the user writes it: which engine it means, its password never shown,
`env:NAME` read when a job needs it, and the queue each project's jobs go through."""

from __future__ import annotations

from pathlib import Path

import pytest

from incrun import broker_urls
from incrun.config import parse_cluster
from incrun.errors import BadConfig


@pytest.mark.parametrize(("url", "kind", "shown"), [
    ("amqp://lab:s3cret@rabbit:5672//", "celery", "amqp://lab:***@rabbit:5672//"),
    ("amqps://lab:s3cret@rabbit//", "celery", "amqps://lab:***@rabbit//"),
    ("redis://:s3cret@cache:6379/0", "celery", "redis://:***@cache:6379/0"),
    ("redis://cache:6379/0", "celery", "redis://cache:6379/0"),
    ("rq+redis://:s3cret@cache:6379/2", "rq", "rq+redis://:***@cache:6379/2"),
    ("redis+socket:///run/redis.sock?password=s3cret", "celery",
     "redis+socket:///run/redis.sock?password=***"),
])
def test_each_form_names_its_engine_and_is_shown_masked(url, kind, shown):
    cluster = parse_cluster(url)
    assert (cluster.kind, str(cluster), cluster.url) == (kind, shown, url)
    assert "s3cret" not in repr(cluster) and "s3cret" not in str(cluster)


def test_errors_from_a_library_lose_the_password():
    url = "amqp://lab:s3cret@rabbit//"
    said = broker_urls.scrub(f"cannot connect to {url}: access refused for s3cret", url)
    assert "s3cret" not in said and "amqp://lab:***@rabbit//" in said


def test_env_names_the_variable_and_is_read_when_needed():
    cluster = parse_cluster("env:INCRUN_BROKER", env={"INCRUN_BROKER": "redis://:pw@h/0"})
    assert cluster.kind == "celery" and str(cluster) == "redis://:***@h/0"
    unset = parse_cluster("env:INCRUN_BROKER", env={})  # status and --dry-run need no broker
    assert unset.kind == "env"
    with pytest.raises(BadConfig, match="the variable INCRUN_BROKER is not set"):
        unset.resolved(env={})
    assert unset.resolved(env={"INCRUN_BROKER": "rq+redis://h/0"}).kind == "rq"
    with pytest.raises(BadConfig, match="holds a Dask cluster's address"):
        unset.resolved(env={"INCRUN_BROKER": "tcp://10.0.0.5:8786"})
    with pytest.raises(BadConfig, match="env: takes a variable's name"):
        parse_cluster("env:not a name")
    with pytest.raises(BadConfig) as mistyped:  # what the variable holds is never shown
        parse_cluster("env:INCRUN_BROKER", env={"INCRUN_BROKER": "amqp:/lab:s3cret@rabbit//"})
    assert "s3cret" not in mistyped.value.message and "INCRUN_BROKER" in mistyped.value.message


def test_a_url_of_no_known_form_is_refused_without_its_password():
    with pytest.raises(BadConfig) as refused:
        parse_cluster("kafka://user:s3cret@host:9092")
    assert "s3cret" not in refused.value.message and "rq+redis://" in refused.value.hint


def test_each_project_has_its_own_queue_and_each_version_its_own_listeners():
    one, other = Path("/work/a/sweep"), Path("/work/b/sweep")
    assert broker_urls.default_queue(one) != broker_urls.default_queue(other)
    assert broker_urls.default_queue(one).startswith("incrun.sweep.")
    listening = broker_urls.versioned("q", "0.1.0")
    assert broker_urls.version_of(listening, "q") == "0.1.0"
    assert broker_urls.version_of(listening, "other") is None
