"""Personal links: signed, expiring tokens for RSVP and survey pages (itsdangerous)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

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
        return dict(self.lazy_links(delegate_id))

    def lazy_links(self, delegate_id: str) -> Links:
        """The same links, each signed only when a template reads it (a pickup SMS uses none)."""
        return Links(self, delegate_id)

    def link(self, name: str, delegate_id: str) -> str:
        path, purpose = _LINKS[name]
        if purpose is None:
            return f"{self.public_url}/{path}"  # public: the same page for everyone
        return f"{self.public_url}/{path}/{self.token(purpose, delegate_id)}"


# name in templates' `links` → (path, token purpose, None for a public page)
_LINKS: dict[str, tuple[str, str | None]] = {
    "rsvp_url": ("r", "rsvp"),
    "survey_url": ("s", "survey"),
    "optout_url": ("u", "optout"),
    "programme_url": ("program", None),
}
LINK_NAMES = frozenset(_LINKS)  # what a template finds in `links`


class Links(Mapping[str, str]):
    """A delegate's personal links, signed on first read."""

    def __init__(self, signer: LinkSigner, delegate_id: str):
        self._signer = signer
        self._delegate_id = delegate_id
        self._made: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self._made:
            if name not in _LINKS:
                raise KeyError(name)
            self._made[name] = self._signer.link(name, self._delegate_id)
        return self._made[name]

    def __contains__(self, name: object) -> bool:
        return name in _LINKS  # without signing

    def __iter__(self) -> Iterator[str]:
        return iter(_LINKS)

    def __len__(self) -> int:
        return len(_LINKS)


class InvalidLink(Exception):
    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)
