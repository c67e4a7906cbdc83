"""Personal links: signed, expiring tokens for RSVP and survey pages (itsdangerous)."""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

RSVP_MAX_AGE = 60 * 86400  # seconds: long enough for an invitation sent weeks ahead
SURVEY_MAX_AGE = 60 * 86400
OPTOUT_MAX_AGE = 365 * 86400  # an old mail's opt-out link should still work


class LinkSigner:
    def __init__(self, secret: str, public_url: str):
        self._serializer = URLSafeTimedSerializer(secret, salt="kallelse-links")
        self.public_url = public_url.rstrip("/")

    def token(self, purpose: str, delegate_id: str) -> str:
        return self._serializer.dumps({"p": purpose, "d": delegate_id})

    def read(self, token: str, purpose: str, max_age: int) -> str:
        """The delegate id in a token. Raises `InvalidLink` (with a reason) when tampered or expired."""
        try:
            data = self._serializer.loads(token, max_age=max_age)
        except SignatureExpired:
            raise InvalidLink("expired") from None
        except BadSignature:
            raise InvalidLink("invalid") from None
        if not isinstance(data, dict) or data.get("p") != purpose:
            raise InvalidLink("invalid")
        return str(data["d"])

    def links_for(self, delegate_id: str) -> dict[str, str]:
        """Every personal link a template may use."""
        return {
            "rsvp_url": f"{self.public_url}/r/{self.token('rsvp', delegate_id)}",
            "survey_url": f"{self.public_url}/s/{self.token('survey', delegate_id)}",
            "optout_url": f"{self.public_url}/u/{self.token('optout', delegate_id)}",
            "programme_url": f"{self.public_url}/program",  # public: the same page for everyone
        }


class InvalidLink(Exception):
    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)
