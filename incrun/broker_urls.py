"""A broker's URL as incrun takes it: which engine it means (Celery over AMQP or Redis, RQ), the
URL with its password masked (the only form ever shown), `env:NAME` to keep it out of files,
and the queue a project's jobs go through by default."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from .errors import BadConfig, ClusterError, first_line

CELERY_SCHEMES = ("amqp", "amqps", "pyamqp", "redis", "rediss", "redis+socket")
RQ_SCHEMES = ("rq+redis", "rq+rediss", "rq+unix")
FORMS = ("amqp://USER:PASS@HOST//, redis://HOST:6379/0 (Celery), "
         "rq+redis://HOST:6379/0 (RQ), env:NAME")
MASK = "***"
SECRET_QUERY = ("password", "pass", "passwd")
CONNECT_TIMEOUT = 5.0  # seconds to reach a broker before saying it cannot be reached


def engine_of(url: str) -> str | None:
    """"celery" or "rq" for a broker URL incrun knows, None for anything else."""
    scheme = url.partition("://")[0].lower()
    if scheme in CELERY_SCHEMES:
        return "celery"
    if scheme in RQ_SCHEMES:
        return "rq"
    return None


def redis_url(url: str) -> str:
    """An `rq+` URL as redis-py takes it."""
    return url[len("rq+"):] if url.lower().startswith("rq+") else url


def env_name(text: str, where: str) -> str | None:
    """For `env:NAME`, the variable's name (checked); None for a URL written out."""
    if not text.startswith("env:"):
        return None
    name = text[len("env:"):]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise BadConfig(f"{where} {text!r}: env: takes a variable's name",
                        hint="for example env:INCRUN_BROKER")
    return name


def from_env(text: str, where: str, env=os.environ) -> str:
    """`env:NAME`: the URL that variable holds; any other text is the URL itself."""
    name = env_name(text, where)
    if name is None:
        return text
    value = env.get(name, "")
    if not value:
        raise BadConfig(f"{where} {text!r}: the variable {name} is not set",
                        hint=f"export {name}=amqp://USER:PASS@HOST//")
    return value


def masked(url: str) -> str:
    """The URL with any password replaced by ***: `amqp://user:***@host//`."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user, colon, _ = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{host}" if colon else f"{userinfo}@{host}"
        query = urlencode([(key, MASK if key.lower() in SECRET_QUERY else value)
                           for key, value in parse_qsl(parts.query, keep_blank_values=True)],
                          safe="*")
        # Written out, not urlunsplit: that drops the // of a URL with no host (a socket's).
        return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
                + (f"#{parts.fragment}" if parts.fragment else ""))
    except ValueError:  # not a URL at all: nothing of it is shown
        return "(a broker URL)"


def scrub(text: str, url: str) -> str:
    """`text` (an error from a broker library, say) with the URL's password masked out."""
    password = urlsplit(url).password if "://" in url else None
    text = text.replace(url, masked(url))
    if password:
        text = text.replace(password, MASK)
    return text


def said(error: BaseException, url: str) -> str:
    """An error's first line, as a broker library wrote it, with the URL's password masked."""
    return scrub(first_line(error), url)


def unreachable(url: str, error: BaseException) -> ClusterError:
    """The broker cannot be reached, or refuses us: one line, the password masked."""
    return ClusterError(f"cannot reach the broker at {masked(url)}: {said(error, url)}",
                        hint="check the URL, the user and password, and that the broker runs")


def lost(url: str, error: BaseException) -> str:
    """Why a run ends when its broker goes, the password masked."""
    return f"lost the broker at {masked(url)}: {said(error, url)}"


def default_queue(root: Path) -> str:
    """The project's own queue: its folder's name and a hash of its path, so that two projects
    on one broker never take each other's jobs (`queue` in the config overrides it)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", root.name) or "project"
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    return f"incrun.{name}.{digest}"


def versioned(queue: str, version: str) -> str:
    """The queue a worker of this incrun version takes jobs from: a stale worker listens on
    another and never gets a job meant for a newer (or older) incrun."""
    return f"{queue}@incrun-{version}"


def version_of(queue: str, base: str) -> str | None:
    """The incrun version a worker's queue says it runs, if it is a queue of `base`."""
    prefix = f"{base}@incrun-"
    return queue[len(prefix):] if queue.startswith(prefix) else None
