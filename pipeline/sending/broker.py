"""Build the dramatiq broker from settings: Redis, RabbitMQ, or an in-process broker.

Call `make_broker` before declaring actors (`sending.actors.declare` takes the broker it returns).
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications, TimeLimit

from pipeline.settings import Settings

# Crash recovery (DESIGN.md): with dramatiq's defaults a killed worker's messages come back after minutes
# or not at all. A 5 s heartbeat and a 10 % maintenance chance bring them back in about 10 s; the ledger
# (stale queued rows) catches anything still lost.
REDIS_HEARTBEAT_TIMEOUT_MS = 5_000
REDIS_MAINTENANCE_CHANCE = 100_000  # out of 1,000,000 broker calls


def middleware() -> list:
    return [
        AgeLimit(),
        TimeLimit(time_limit=120_000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(),
    ]


def make_broker(settings: Settings) -> dramatiq.Broker:
    url = settings.broker_url
    if url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        broker: dramatiq.Broker = RedisBroker(
            url=url,
            middleware=middleware(),
            namespace="kallelse",
            heartbeat_timeout=REDIS_HEARTBEAT_TIMEOUT_MS,
            maintenance_chance=REDIS_MAINTENANCE_CHANCE,
        )
    elif url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url, middleware=middleware())
    elif not url:
        broker = StubBroker(middleware=middleware(), fail_fast_default=False)
    else:
        from pipeline.errors import ConfigError

        raise ConfigError(f"BROKER_URL: {url.split('://')[0]!r} is not redis://, amqp:// or empty")
    dramatiq.set_broker(broker)
    return broker


def is_in_process(broker: dramatiq.Broker) -> bool:
    return isinstance(broker, StubBroker)


def waiting(broker: dramatiq.Broker, queue: str) -> int | None:
    """Messages in `queue` not yet done (waiting or being worked on); None when the broker cannot tell."""
    try:
        if isinstance(broker, StubBroker):
            return broker.queues[queue].qsize() if queue in broker.queues else 0
        from dramatiq.brokers.redis import RedisBroker

        if isinstance(broker, RedisBroker):  # the queue's message hash holds waiting and unacked ones
            return int(broker.client.hlen(f"{broker.namespace}:{queue}.msgs"))
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        if isinstance(broker, RabbitmqBroker):  # ready messages
            return int(broker.get_queue_message_counts(queue)[0])
    except Exception:  # the broker is unreachable: the next pass asks again
        return None
    return None
