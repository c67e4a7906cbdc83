"""What failed, in one line: outages (database, broker) and mistakes (settings, event file) that a
long-running process waits out and a command reports without a traceback.

`describe(error)` names the part and says what went wrong; None means "not one of ours: a bug", which
deserves its traceback.
"""

from __future__ import annotations

from pipeline.errors import ConfigError, KallelseError


def describe(error: BaseException) -> str | None:
    if isinstance(error, ConfigError):
        return "; ".join(error.problems)
    if isinstance(error, KallelseError):
        return str(error)
    for part, check in (("database", _database), ("broker", _broker)):
        detail = check(error)
        if detail:
            return f"{part}: {detail}"
    return None


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _database(error: BaseException) -> str | None:
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    if isinstance(error, ArgumentError | NoSuchModuleError):
        return f"DATABASE_URL is not a database URL ({_first_line(error)})"
    if isinstance(error, OperationalError):
        return f"unreachable or refusing ({_first_line(error)})"
    return None


def _broker(error: BaseException) -> str | None:
    import redis.exceptions

    if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return f"Redis unreachable ({_first_line(error)})"
    try:
        import pika.exceptions
    except ImportError:  # pragma: no cover - pika comes with dramatiq[rabbitmq]
        return None
    if isinstance(error, pika.exceptions.AMQPConnectionError):
        return f"RabbitMQ unreachable ({_first_line(error)})"
    # dramatiq's own ConnectionError, recognised by name: the web app must not import dramatiq.
    if type(error).__module__.startswith("dramatiq") and "Connection" in type(error).__name__:
        return f"unreachable ({_first_line(error)})"
    return None
