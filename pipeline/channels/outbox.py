"""The outbox channels: the honest in-package fake. Messages become files instead of leaving the machine.

Layout (the factory uses `Settings.outbox_dir`, i.e. `DATA_DIR/outbox/`):

    outbox/email/<safe-key>.eml   the full MIME message, exactly as SMTP would have sent it
    outbox/sms/<safe-key>.json    {"key", "to", "body", "status_callback", "segments", "encoding", "created"}

Each channel writes into the directory it is given. `<safe-key>` is the ledger key when it is already a
safe file name, else the key with unsafe characters replaced plus a short hash of the real key (so two keys
never share a file). Files are written to a temp file and renamed into place, so a reader never sees half a
message; a key whose file exists is not written again, so sending the same key twice leaves one file.
Receipts say `outbox:<filename>`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pipeline.channels.base import EmailMessage, Receipt, SmsMessage
from pipeline.channels.mime import build_mime
from pipeline.sms import sms_segments

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 120


class OutboxEmail:
    """Writes each email as `<safe-key>.eml` under `directory`."""

    def __init__(
        self, directory: Path | str, *, sender: str = "kallelse@localhost", reply_to: str | None = None
    ):
        self.directory = Path(directory)
        self.sender = sender
        self.reply_to = reply_to

    def send(self, message: EmailMessage) -> Receipt:
        path = self.directory / f"{safe_key(message.key)}.eml"
        if not path.exists():
            mime = build_mime(message, sender=self.sender, reply_to=self.reply_to)
            _write_atomic(path, mime.as_bytes())
        log.info("outbox email %s -> %s", message.key, path.name)
        return Receipt(provider_id=f"outbox:{path.name}", status="sent")

    def close(self) -> None:
        pass


class OutboxSms:
    """Writes each SMS as `<safe-key>.json` under `directory`."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    def send(self, message: SmsMessage) -> Receipt:
        path = self.directory / f"{safe_key(message.key)}.json"
        if not path.exists():
            _write_atomic(path, _sms_json(message))
        log.info("outbox sms %s to %s -> %s", message.key, mask_phone(message.to), path.name)
        return Receipt(provider_id=f"outbox:{path.name}", status="sent")

    def close(self) -> None:
        pass


def safe_key(key: str) -> str:
    """A file-name stem for a ledger key; distinct keys give distinct stems."""
    stem = _UNSAFE.sub("_", key).strip("._") or "message"
    if stem == key and len(stem) <= _MAX_STEM:
        return stem
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
    return f"{stem[:_MAX_STEM]}-{digest}"


def mask_phone(number: str) -> str:
    """'+46701234567' -> '+4670****567': enough to tell numbers apart in a log, not enough to call one."""
    if len(number) <= 7:
        return "*" * len(number)
    return f"{number[:5]}****{number[-3:]}"


def _sms_json(message: SmsMessage) -> bytes:
    counted = sms_segments(message.body)
    segments, encoding = counted.segments, counted.encoding
    record = {
        "key": message.key,
        "to": message.to,
        "body": message.body,
        "status_callback": message.status_callback,
        "segments": segments,
        "encoding": encoding,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return json.dumps(record, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # Two workers racing on one key both rename a complete file into place: still one file.
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
