"""Twilio's webhooks: inbound SMS (answered with TwiML) and delivery-status callbacks.

Both check `X-Twilio-Signature` against PUBLIC_URL + path before anything is read into the database: a
request that fails the check gets 403 and leaves no trace. Database work runs in the thread pool.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from pipeline.inbound import InboundResult, clean_text, handle_sms
from pipeline.store.responses import apply_status, delegate_by_phone, record_inbound
from pipeline.web.deps import runtime

log = logging.getLogger(__name__)
router = APIRouter(prefix="/twilio")

MAX_BODY_BYTES = 64 * 1024  # Twilio posts a few kB at most (a text is at most 1,600 characters)
RECEIVED = "Tack, vi har tagit emot ditt meddelande. / Thank you, we have received your message."


async def verified_form(request: Request) -> FormData:
    """The POSTed form, if Twilio signed it with our auth token; else 403 (also with no token set)."""
    token = runtime(request).settings.twilio_auth_token.get_secret_value()
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        raise HTTPException(403, "missing Twilio signature" if token else "TWILIO_AUTH_TOKEN is not set")
    if len(await request.body()) > MAX_BODY_BYTES:
        raise HTTPException(413, "too large for a Twilio webhook")
    form = await request.form()
    if not RequestValidator(token).validate(signed_url(request), form, signature):
        log.warning("rejected a request to %s with a wrong Twilio signature", request.url.path)
        raise HTTPException(403, "wrong Twilio signature")
    return form


def signed_url(request: Request) -> str:
    """The URL Twilio signed: the public one configured in Twilio, not the one this process sees."""
    url = runtime(request).settings.public_url.rstrip("/") + request.url.path
    return f"{url}?{request.url.query}" if request.url.query else url


@router.post("/sms")
async def inbound_sms(request: Request) -> Response:
    form = await verified_form(request)
    sid = str(form.get("MessageSid") or form.get("SmsSid") or "")
    sender, body = str(form.get("From") or ""), str(form.get("Body") or "")
    if not sid:  # signed, but not a message: nothing to store or answer
        return twiml(None)
    try:
        result = await run_in_threadpool(_handle, request, sender, body, sid)
    except Exception:  # whatever a body does to the handler, the text is kept and answered
        log.exception("sms %s could not be read; stored for the organisers", sid)
        result = await run_in_threadpool(_store_unread, request, sender, body, sid)
    return twiml(result.reply_text)


def _handle(request: Request, sender: str, body: str, sid: str) -> InboundResult:
    rt = runtime(request)
    with rt.store.session() as session:
        return handle_sms(session, rt.event, sender=sender, body=body, message_sid=sid, now=rt.clock())


def _store_unread(request: Request, sender: str, body: str, sid: str) -> InboundResult:
    rt = runtime(request)
    sender, body = clean_text(sender)[:254], clean_text(body)
    with rt.store.session() as session:
        delegate = delegate_by_phone(session, sender)
        stored = record_inbound(
            session,
            channel="sms",
            provider_id=sid[:255],
            sender=sender,
            body=body,
            delegate_id=delegate.id if delegate else None,
            context="none",
            kind="unknown",
            value=None,
            now=rt.clock(),
        )
    return InboundResult(RECEIVED if stored else None, "unknown", duplicate=not stored)


def twiml(reply_text: str | None) -> Response:
    """TwiML answering with `reply_text`; an empty <Response/> acknowledges without answering."""
    response = MessagingResponse()
    if reply_text:
        response.message(reply_text)
    return Response(str(response), media_type="application/xml")


@router.post("/status")
async def delivery_status(request: Request) -> Response:
    form = await verified_form(request)
    sid = str(form.get("MessageSid") or form.get("SmsSid") or "")
    status = str(form.get("MessageStatus") or form.get("SmsStatus") or "")
    code = str(form.get("ErrorCode") or "")[:20] or None
    if sid and status:
        await run_in_threadpool(_apply_status, request, sid, status, code)
    return Response(status_code=204)


def _apply_status(request: Request, sid: str, status: str, code: str | None) -> None:
    rt = runtime(request)
    with rt.store.session() as session:
        moved = apply_status(session, sid, status, code, rt.clock())
    log.info("status %s for %s: %s", status, sid, f"now {moved}" if moved else "no change")
