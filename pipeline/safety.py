"""Settings that are unsafe for a real run. Pure: a `Settings` in, the problems as sentences out.

`kallelse web`, `worker`, `scheduler` and `run` refuse to start on a `refusal`; `kallelse check` reports
every `unsafe_settings` problem. The secret matters once anything leaves the machine: with the public
default SECRET_KEY anyone can sign an RSVP link (decline for any delegate) or forge a dashboard session.
"""

from __future__ import annotations

from ipaddress import ip_address
from urllib.parse import urlsplit

from pipeline.settings import Settings

DEFAULT_SECRET_KEY = "change-me-in-production"
MIN_SECRET_LENGTH = 32
_LOCAL_NAMES = frozenset({"localhost", ""})
_HOW_TO_MAKE_ONE = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def real_channels(settings: Settings) -> list[str]:
    """The settings that make messages leave the machine, as `NAME=value`."""
    found = []
    if settings.sms_backend == "twilio":
        found.append("SMS_BACKEND=twilio")
    if settings.email_backend == "smtp":
        found.append("EMAIL_BACKEND=smtp")
    return found


def is_local_address(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:  # a name, not an address: only "localhost" names are known to be local
        return False


def public_url_is_local(settings: Settings) -> bool:
    return is_local_address(urlsplit(settings.public_url).hostname or "")


def weak_secret(settings: Settings) -> bool:
    secret = settings.secret_key.get_secret_value()
    return secret == DEFAULT_SECRET_KEY or len(secret) < MIN_SECRET_LENGTH


def refusal(settings: Settings) -> str | None:
    """One line naming SECRET_KEY when a process must not start with it; None when it may."""
    if not weak_secret(settings):
        return None
    reasons = real_channels(settings) + ([] if public_url_is_local(settings) else ["PUBLIC_URL is public"])
    if not reasons:
        return None  # a trial on this machine: nothing signed with it reaches anyone else
    return (
        f"SECRET_KEY is the public default or shorter than {MIN_SECRET_LENGTH} characters while "
        f"{' and '.join(reasons)}: anyone could sign RSVP links and dashboard sessions; set SECRET_KEY to "
        f"a long random value ({_HOW_TO_MAKE_ONE})"
    )


def unsafe_settings(settings: Settings, web_host: str | None = None) -> list[str]:
    """Every setting `kallelse check` reports as unsafe for this configuration."""
    problems = [line for line in [refusal(settings)] if line]
    channels = real_channels(settings)
    if channels and public_url_is_local(settings):
        problems.append(
            f"PUBLIC_URL is {settings.public_url} while {' and '.join(channels)}: links in messages and "
            "Twilio's status callbacks would point at this machine; set PUBLIC_URL to the web app's address"
        )
    host = web_host or settings.web_host
    if not is_local_address(host) and not settings.admin_password.get_secret_value():
        problems.append(
            f"ADMIN_PASSWORD is empty while the web app listens on {host}: set one (the dashboard stays "
            "closed without it, and nobody can follow the sending)"
        )
    return problems
