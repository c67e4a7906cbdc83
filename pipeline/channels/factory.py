"""Build the configured channels from `Settings`. Called by entry points (workers, simulate), once per thread.

    EMAIL_BACKEND=outbox  -> OutboxEmail(DATA_DIR/outbox/email)      EMAIL_BACKEND=smtp   -> SmtpChannel
    SMS_BACKEND=outbox    -> OutboxSms(DATA_DIR/outbox/sms)          SMS_BACKEND=twilio   -> TwilioSms

Missing settings raise ConfigError naming every one of them, before anything is sent.
"""

from __future__ import annotations

from pipeline.channels.base import EmailChannel, SmsChannel
from pipeline.channels.outbox import OutboxEmail, OutboxSms
from pipeline.errors import ConfigError
from pipeline.settings import Settings


def email_channel(settings: Settings) -> EmailChannel:
    reply_to = settings.email_reply_to or None
    if settings.email_backend == "outbox":
        return OutboxEmail(settings.outbox_dir / "email", sender=settings.email_from, reply_to=reply_to)
    _check_smtp(settings)
    from pipeline.channels.smtp import SmtpChannel

    return SmtpChannel(
        settings.smtp_host,
        settings.smtp_port,
        security=settings.smtp_security,
        user=settings.smtp_user,
        password=settings.smtp_password.get_secret_value(),
        sender=settings.email_from,
        reply_to=reply_to,
        timeout=settings.smtp_timeout,
    )


def sms_channel(settings: Settings) -> SmsChannel:
    if settings.sms_backend == "outbox":
        return OutboxSms(settings.outbox_dir / "sms")
    _check_twilio(settings)
    # Imported here: the twilio library is slow to import and the outbox never needs it.
    from pipeline.channels.twilio import TwilioSms

    return TwilioSms(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        from_number=settings.twilio_from or None,
        messaging_service_sid=settings.twilio_messaging_service_sid or None,
        api_url=settings.twilio_api_url or None,
        timeout=settings.twilio_timeout,
        status_callback_base=settings.public_url,
    )


def _check_smtp(settings: Settings) -> None:
    problems = []
    if not settings.smtp_host:
        problems.append("EMAIL_BACKEND=smtp needs SMTP_HOST")
    if not settings.email_from:
        problems.append("EMAIL_BACKEND=smtp needs EMAIL_FROM")
    if settings.smtp_user and not settings.smtp_password.get_secret_value():
        problems.append("SMTP_USER is set but SMTP_PASSWORD is empty")
    if problems:
        raise ConfigError(problems)


def _check_twilio(settings: Settings) -> None:
    problems = []
    if not settings.twilio_account_sid:
        problems.append("SMS_BACKEND=twilio needs TWILIO_ACCOUNT_SID")
    if not settings.twilio_auth_token.get_secret_value():
        problems.append("SMS_BACKEND=twilio needs TWILIO_AUTH_TOKEN")
    if not (settings.twilio_from or settings.twilio_messaging_service_sid):
        problems.append("SMS_BACKEND=twilio needs TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID")
    if settings.twilio_timeout <= 0:
        problems.append("TWILIO_TIMEOUT must be positive (the twilio library would otherwise wait forever)")
    if problems:
        raise ConfigError(problems)
