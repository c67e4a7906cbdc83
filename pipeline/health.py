"""What `/healthz` and `/metrics` report: the database, the broker, the scheduler's heartbeat, and the
ledger in Prometheus form.

Workers, scheduler and web app are separate processes, so the figures come from the database they share
(ledger states, lateness, the provider error counter, the scheduler's heartbeat row), read at each scrape.
The broker is checked with its own client (redis / pika): the web app never imports dramatiq.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from pipeline.outages import describe
from pipeline.runtime import Runtime
from pipeline.store import leases
from pipeline.store.models import LedgerRow

# Lateness (sent − due), seconds: "on time" is under a few seconds; a backlog shows in minutes.
LATENESS_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
PROBE_TIMEOUT = 1.0  # seconds: a health check must answer even when a part hangs


@dataclass
class Health:
    checks: dict[str, str] = field(default_factory=dict)  # part → "ok" or what is wrong
    tick_age: float | None = None

    @property
    def ok(self) -> bool:
        return all(value == "ok" for value in self.checks.values())


def check_health(rt: Runtime) -> Health:
    health = Health()
    health.checks["database"] = _probe(lambda: _database(rt))
    health.checks["broker"] = _probe(lambda: _broker(rt.settings.broker_url))
    health.checks["scheduler"] = _probe(lambda: _scheduler(rt, health))
    return health


def _probe(check) -> str:
    try:
        return check()
    except Exception as e:  # a health check reports what is wrong; it never raises
        return describe(e) or f"{type(e).__name__}: {e}"


def _database(rt: Runtime) -> str:
    with rt.store.session() as session:
        session.execute(text("SELECT 1"))
    return "ok"


def _broker(url: str) -> str:
    if not url:
        return "ok"  # in-process: the broker lives and dies with `kallelse run`
    if url.startswith(("amqp://", "amqps://")):
        import pika

        params = pika.URLParameters(url)
        params.connection_attempts, params.socket_timeout = 1, PROBE_TIMEOUT
        pika.BlockingConnection(params).close()
        return "ok"
    import redis

    client = redis.Redis.from_url(url, socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def _scheduler(rt: Runtime, health: Health) -> str:
    with rt.store.session() as session:
        beat = leases.heartbeat(session)
    if beat is None or beat.last_tick_at is None:
        return "no scheduler has ticked yet"
    health.tick_age = (rt.clock() - beat.last_tick_at).total_seconds()
    if health.tick_age > rt.settings.healthz_max_tick_age_seconds:
        return f"the scheduler's last tick was {health.tick_age:.0f} s ago"
    return "ok"


class LedgerCollector(Collector):
    """Reads the shared database at each scrape."""

    def __init__(self, rt: Runtime):
        self.rt = rt

    def collect(self) -> Iterator:
        with self.rt.store.session() as session:
            by_state = session.execute(
                select(LedgerRow.state, LedgerRow.channel, func.count()).group_by(
                    LedgerRow.state, LedgerRow.channel
                )
            ).all()
            late = session.execute(
                select(LedgerRow.due_at, LedgerRow.sent_at).where(LedgerRow.sent_at.is_not(None))
            ).all()
            errors = leases.provider_errors(session)
            beat = leases.heartbeat(session)
        yield _messages(by_state)
        yield _lateness([(sent - due).total_seconds() for due, sent in late if sent is not None])
        yield _errors(errors)
        yield from _ticks(self.rt, beat)


def _messages(rows) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        "kallelse_messages", "Ledger rows by state and channel", labels=["state", "channel"]
    )
    for state, channel, count in rows:
        gauge.add_metric([state, channel], count)
    return gauge


def _lateness(seconds: list[float]) -> HistogramMetricFamily:
    buckets = [(str(bound), sum(1 for s in seconds if s <= bound)) for bound in LATENESS_BUCKETS]
    return HistogramMetricFamily(
        "kallelse_lateness_seconds",
        "How long after its due time each message was sent (sent - due)",
        buckets=[*buckets, ("+Inf", len(seconds))],
        sum_value=sum(seconds),
    )


def _errors(counts: dict[tuple[str, str], int]) -> CounterMetricFamily:
    counter = CounterMetricFamily(
        "kallelse_provider_errors", "Provider errors by channel and code", labels=["channel", "code"]
    )
    for (channel, code), count in sorted(counts.items()):
        counter.add_metric([channel, code], count)
    return counter


def _ticks(rt: Runtime, beat: leases.Heartbeat | None) -> Iterator[GaugeMetricFamily]:
    duration = GaugeMetricFamily("kallelse_scheduler_tick_seconds", "How long the last scheduler tick took")
    age = GaugeMetricFamily("kallelse_scheduler_last_tick_age_seconds", "Seconds since the last tick")
    if beat is not None and beat.last_tick_at is not None:
        duration.add_metric([], beat.tick_seconds or 0.0)
        age.add_metric([], (rt.clock() - beat.last_tick_at).total_seconds())
    yield duration
    yield age


def metrics_text(rt: Runtime) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(rt))
    return generate_latest(registry)
