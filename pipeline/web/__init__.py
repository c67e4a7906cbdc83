"""The web side of kallelse: Twilio webhooks (inbound SMS, delivery status) and the RSVP and survey pages.

`create_app(runtime)` builds the FastAPI app; `server.WebServer` / `server.serve` run it under uvicorn.
"""
