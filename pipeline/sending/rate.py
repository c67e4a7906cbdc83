"""SMS_RATE_PER_SECOND, enforced: every worker sharing the broker takes SMS tokens from one bucket in Redis.

dramatiq's `BucketRateLimiter` counts per time bucket in its backend (Redis for the Redis broker, so all
worker processes and machines share it). Its limiters never block: failing to acquire raises, and a retried
message goes to the back of the queue, out of due order. So a worker takes the tokens for a whole batch here
and *waits* for the next bucket when this one is full, before it claims anything: rows stay `queued` while
they wait, and batches leave in the order they were fetched.

Buckets are about 100 ms (one second for rates under 10/s), so a second's worth never goes out in one burst.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import dramatiq
from dramatiq.rate_limits import BucketRateLimiter
from dramatiq.rate_limits.backends import StubBackend

from pipeline.settings import Settings

log = logging.getLogger(__name__)
KEY = "kallelse-sms-rate"


class SmsRate:
    def __init__(self, backend, per_second: float, clock: Callable[[], float] = time.time):
        self.per_bucket = max(1, round(per_second / 10))
        self.bucket_ms = max(1, round(1000 * self.per_bucket / per_second))
        self.limiter = BucketRateLimiter(backend, KEY, limit=self.per_bucket, bucket=self.bucket_ms)
        self._clock = clock

    def take(self, count: int) -> None:
        """Wait until `count` SMS may go out."""
        while count > 0:
            now_ms = int(self._clock() * 1000)
            bucket = now_ms - now_ms % self.bucket_ms
            want = min(count, self.per_bucket)
            if self._incr(bucket, want):
                count -= want
            elif want > 1 and self._incr(bucket, 1):
                count -= 1  # the bucket's last tokens
            else:
                time.sleep((bucket + self.bucket_ms - now_ms) / 1000)

    def _incr(self, bucket: int, amount: int) -> bool:
        # The limiter's own key for this bucket, taken `amount` at a time (its acquire() takes one).
        key = f"{self.limiter.key}@{bucket}"
        return bool(self.limiter.backend.incr(key, amount, maximum=self.per_bucket, ttl=2 * self.bucket_ms))


def sms_rate(settings: Settings, broker: dramatiq.Broker) -> SmsRate | None:
    """The shared limiter when SMS_RATE_PER_SECOND is set (in the environment or .env); None when it is
    left at its default, which is then only the estimate that previews use."""
    if "sms_rate_per_second" not in settings.model_fields_set or settings.sms_rate_per_second <= 0:
        return None
    from dramatiq.brokers.redis import RedisBroker

    if isinstance(broker, RedisBroker):
        from dramatiq.rate_limits.backends import RedisBackend

        return SmsRate(RedisBackend(client=broker.client), settings.sms_rate_per_second)
    log.warning("SMS_RATE_PER_SECOND is enforced per worker process: only a Redis broker shares it")
    return SmsRate(StubBackend(), settings.sms_rate_per_second)
