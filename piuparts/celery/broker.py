"""The broker: its URL (never without a password), the Celery app, the Redis keys.

Both sides make their Celery application with :func:`make_app`, so they
agree on everything that matters: JSON messages only (no pickle), one task
name, late acknowledgement (a worker that dies mid-test leaves its message
unacknowledged), a prefetch of one, and a visibility timeout above the
longest test.  Beside Celery's queue the two sides share a few Redis keys
of their own (:class:`Keys`): the attempt a test is at, its lease, its
answer.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import parse_qs, urlparse

from piuparts.errors import UsageError

#: The one task name a worker accepts.
TASK_NAME = "piuparts.test"
#: The queue it listens on.
QUEUE = "piuparts"
#: Redis keys a worker publishes itself under: ``pp:worker:NODENAME``.
WORKER_PREFIX = "pp:worker:"
#: How long (seconds) the keys of a test's attempt live in Redis.
KEY_TTL = 7 * 86400
#: The visibility timeout by default: Redis gives an unacknowledged message to
#: another worker after this long, so it must be above the longest test.
DEFAULT_VISIBILITY = 6 * 3600


def check_url(url: str, insecure: bool = False) -> str:
    """``url`` if it is a Redis URL with credentials (or, with ``insecure``, one
    without for a loopback address); else a one-line UsageError saying how to fix it."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise UsageError(f"--broker {safe_url(url)}: expected redis://:PASSWORD@HOST:6379/0 "
                         "(or rediss:// for TLS)")
    try:
        parsed.port
    except ValueError:
        raise UsageError(f"--broker {safe_url(url)}: the port is not a number") from None
    if parsed.password:
        return url
    if not insecure:
        raise UsageError(f"--broker {safe_url(url)}: no password; give one (redis://:PASSWORD@HOST:6379/0, "
                         "redis-server's requirepass), or --insecure-broker for a broker on this machine's "
                         "loopback address")
    if not _loopback(parsed.hostname):
        raise UsageError(f"--broker {safe_url(url)}: --insecure-broker is only for a loopback address "
                         "(127.0.0.1, ::1, localhost); a broker other machines reach needs a password")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def safe_url(url: str) -> str:
    """The URL with its password hidden (for messages and logs)."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def ssl_options(url: str) -> dict[str, Any] | None:
    """For a rediss:// URL, the TLS settings its query names (ssl_ca_certs, ssl_certfile,
    ssl_keyfile, ssl_cert_reqs; certificates are required by default)."""
    parsed = urlparse(url)
    if parsed.scheme != "rediss":
        return None
    import ssl
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    reqs = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
    options: dict[str, Any] = {"ssl_cert_reqs": reqs.get(query.get("ssl_cert_reqs", "required").lower(),
                                                         ssl.CERT_REQUIRED)}
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if name in query:
            options[name] = query[name]
    return options


def plain_url(url: str) -> str:
    """The URL without its query (the TLS settings go in separately)."""
    return url.split("?", 1)[0]


def make_app(url: str, visibility_timeout: float = DEFAULT_VISIBILITY) -> Any:
    """The Celery application of both sides (imports Celery)."""
    from celery import Celery
    app = Celery("piuparts", broker=plain_url(url), set_as_current=False)
    tls = ssl_options(url)
    app.conf.update(
        broker_use_ssl=tls,
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_acks_late=True, task_reject_on_worker_lost=True, task_ignore_result=True,
        task_default_queue=QUEUE, task_create_missing_queues=False,
        worker_prefetch_multiplier=1, worker_hijack_root_logger=False,
        worker_send_task_events=False, worker_enable_remote_control=False,
        broker_connection_retry=True, broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None, broker_channel_error_retry=True,
        broker_heartbeat=0,
        broker_transport_options={"visibility_timeout": int(visibility_timeout),
                                  "socket_timeout": 10, "socket_connect_timeout": 10,
                                  "retry_on_timeout": True, "health_check_interval": 10},
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.5, "interval_step": 1,
                                   "interval_max": 2},
    )
    return app


def redis_client(url: str) -> Any:
    """A redis-py client on the broker (the same credentials and TLS)."""
    import redis
    tls = ssl_options(url) or {}
    return redis.Redis.from_url(plain_url(url), socket_timeout=10, socket_connect_timeout=10,
                                health_check_interval=10, decode_responses=True, **tls)


class Keys:
    """The Redis keys of one coordinator (``namespace``: 16 hex digits)."""

    def __init__(self, namespace: str) -> None:
        if not re.fullmatch(r"[0-9a-f]{16}", namespace):
            raise UsageError(f"namespace {namespace!r}: 16 hexadecimal digits expected")
        self.ns = namespace

    def task(self, task_id: str) -> str:
        """The attempt a test is at."""
        return f"pp:{self.ns}:task:{task_id}"

    def want(self, attempt: str) -> str:
        """Present while the coordinator still wants this attempt run."""
        return f"pp:{self.ns}:want:{attempt}"

    def lease(self, attempt: str) -> str:
        """Held (and renewed) by the worker running the attempt."""
        return f"pp:{self.ns}:lease:{attempt}"

    def started(self, attempt: str) -> str:
        """Who took the attempt, and when."""
        return f"pp:{self.ns}:started:{attempt}"

    def result(self, attempt: str) -> str:
        """The worker's answer."""
        return f"pp:{self.ns}:result:{attempt}"

    @property
    def inbox(self) -> str:
        """The attempts whose answer waits for the coordinator."""
        return f"pp:{self.ns}:inbox"
