"""dramatiq's no-op actor on the benchmark's Redis: the ceiling `bench/sending.py` compares against.

dramatiq bench.noop -p 2 -t 8      # with BENCH_BROKER_URL set
"""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ["BENCH_BROKER_URL"], namespace="bench-noop")
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop", queue_name="noop")
def noop() -> None:
    pass
