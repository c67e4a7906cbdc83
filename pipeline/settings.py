"""Settings from the environment or `.env`. Built once at an entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Where things live
    data_dir: Path = Path("var")
    database_url: str = ""  # empty: SQLite at DATA_DIR/kallelse.sqlite3
    event_file: Path = Path("config/event.toml")
    templates_dir: Path = Path("templates")

    # Queue
    broker_url: str = ""  # empty: in-process broker; redis://… or amqp://…
    worker_processes: int = 2
    worker_threads: int = 8
    sms_concurrency: int = 64  # SMS requests in flight per worker process (a provider answers in ~200 ms)

    # Email
    email_backend: Literal["outbox", "smtp"] = "outbox"
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_timeout: float = 30.0
    email_from: str = "Svenska industrikommuner <kallelse@example.org>"
    email_reply_to: str = ""

    # SMS
    sms_backend: Literal["outbox", "twilio"] = "outbox"
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from: str = ""
    twilio_messaging_service_sid: str = ""
    twilio_api_url: str = ""  # empty: Twilio's own API
    twilio_timeout: float = 15.0
    sms_rate_per_second: float = 10.0

    # Replies by email (`kallelse inbox` reads the EMAIL_REPLY_TO mailbox)
    imap_host: str = ""
    imap_port: int = 993
    imap_user: str = ""
    imap_password: SecretStr = SecretStr("")
    imap_folder: str = "INBOX"
    imap_security: Literal["none", "starttls", "tls"] = "tls"
    imap_timeout: float = 30.0

    # Web
    public_url: str = "http://localhost:8000"
    secret_key: SecretStr = SecretStr("change-me-in-production")
    port: int = 8000
    web_host: str = "127.0.0.1"  # 0.0.0.0 behind a platform's router
    admin_password: SecretStr = SecretStr("")
    login_rate_limit: str = "10/minute"  # login attempts per client address (`limits` notation)

    # Delivery policy. A transient failure is retried until the message's own validity ends (a broadcast's
    # 12 hours); MAX_ATTEMPTS only bounds rows that have no validity.
    max_attempts: int = 6
    retry_min_backoff_ms: int = 2_000
    retry_max_backoff_ms: int = 300_000
    reconcile_after_seconds: int = 60  # after a lost Twilio answer: first look in its message list
    reconcile_window_seconds: int = 600  # resend only if the list still lacks the SMS this long after
    requeue_after_seconds: int = 120  # a queued row older than this was lost by the broker
    scheduler_lease_seconds: float = 10.0  # a standby scheduler takes over this long after the active died
    healthz_max_tick_age_seconds: float = 30.0  # /healthz is unhealthy when the last tick is older

    @property
    def effective_database_url(self) -> str:
        if self.database_url.startswith("postgres://"):  # what Heroku-like platforms hand out
            return "postgresql://" + self.database_url.removeprefix("postgres://")
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'kallelse.sqlite3'}"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"
