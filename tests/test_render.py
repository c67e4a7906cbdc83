"""Rendering: SMS segment counting, templates for every rule in both languages, and the event's .ics."""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import jinja2
import pytest
import vobject

from pipeline.delegates import Delegate
from pipeline.ics import calendar_template, delegate_ics, profile
from pipeline.links import LinkSigner
from pipeline.render import (
    build_context,
    check_templates,
    email_profile,
    email_template,
    event_context,
    facts_shown,
    make_env,
    render_email,
    render_sms,
    short_when,
)
from pipeline.sms import Segments, one_line, sms_segments
from pipeline.timetable import Event, load_event

ROOT = Path(__file__).resolve().parent.parent
LINKS = {
    "rsvp_url": "https://kallelse.example.se/r/eyJkIjoiZC0xIn0.AbCdEfGhIjKl",
    "survey_url": "https://kallelse.example.se/s/eyJkIjoiZC0xIn0.AbCdEfGhIjKl",
    "optout_url": "https://kallelse.example.se/o/eyJkIjoiZC0xIn0.AbCdEfGhIjKl",
    "programme_url": "https://kallelse.example.se/program",
}
LOGISTICS = ("day_before", "pickup", "dinner", "day2_room")
RULE_TEMPLATES = (
    "invitation",
    "rsvp_reminder",
    "practical",
    "day_before",
    "pickup",
    "dinner",
    "day2_room",
    "survey",
    "survey_reminder",
)
# Long first names on purpose: the logistics texts must stay in one part for real people.
DELEGATES = (
    Delegate("d-1", "Marie-Louise Åkerström", "ml@skelleftea.se", "+46701234501", stop="hotel", role="kso"),
    Delegate("d-2", "Christoffer Öhrström", "co@lulea.se", "+46701234502", stop="airport"),
    Delegate("d-3", "Åsa Lind", "asa@boden.se", "+46701234503", role="kso"),
    Delegate("d-4", "Karl-Fredrik Ek", "kfe@kiruna.se", "+46701234504", stop="airport", role="official"),
    Delegate("d-5", "Ingrid Björk", "ingrid@gallivare.se", None, stop="hotel"),
    Delegate("d-6", "Zoë Nyström", None, "+46701234506", stop="airport"),
)
EXTRA = {
    "text": "Bussen från The Wood Hotel är tio minuter sen.",
    "changes": [
        {
            "what": "Bussen från The Wood Hotel",
            "old": datetime(2021, 11, 25, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm")),
            "new": datetime(2021, 11, 25, 8, 15, tzinfo=UTC),  # 09.15 local: the context converts it
        }
    ],
}


def confirm_room(event: Event, session_id: str, room: str) -> Event:
    """The event once the hotel has named a day-2 room: the room written in, `tbc` removed."""
    item = event.item("separate")
    sessions = [
        s.model_copy(update={"room": room, "tbc": []}) if s.id == session_id else s for s in item.sessions
    ]
    items = [i.model_copy(update={"sessions": sessions}) if i.id == "separate" else i for i in event.items]
    return event.model_copy(update={"items": items})


@pytest.fixture(scope="module")
def event() -> Event:
    return load_event(ROOT / "config" / "event.toml")


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    return make_env(ROOT / "templates")


def each_language(delegates=DELEGATES):
    return [dataclasses.replace(d, language=lang) for d in delegates for lang in ("sv", "en")]


# -- SMS segments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("Hej!", "GSM-7", 4, 1),
        ("Bussen går från Skellefteå, Åre, Ängelholm och Örebro", "GSM-7", 53, 1),
        ("é É ü Ü ñ Ñ à Ø æ ß @ £ $ ¥ ¿ ¡ § Δ", "GSM-7", 35, 1),
        ("{}", "GSM-7", 4, 1),  # extension characters take an escape septet each
        ("€10 [a] ~b~ ^c^ |d| \\", "GSM-7", 31, 1),  # 21 characters, 10 of them from the extension
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("ö" * 306, "GSM-7", 306, 2),
        ("ö" * 307, "GSM-7", 307, 3),
        ("a" * 159 + "€", "GSM-7", 161, 2),  # the euro sign tips 159 septets over the edge
        ("Hej 👋", "UCS-2", 6, 1),  # an emoji is two UTF-16 units
        ("Привет", "UCS-2", 6, 1),
        ("a" * 69 + "ж", "UCS-2", 70, 1),
        ("a" * 70 + "ж", "UCS-2", 71, 2),
        ("ж" * 134, "UCS-2", 134, 2),
        ("ж" * 135, "UCS-2", 135, 3),
        ("Samtal – kl. 10.15", "UCS-2", 18, 1),  # an en dash is not GSM-7: templates' text is normalised
    ],
)
def test_sms_segments_are_counted_as_gsm_03_38_says(text, encoding, units, segments):
    """GSM-7 counts septets (extension characters twice), UCS-2 counts UTF-16 units, with UDH limits."""
    assert sms_segments(text) == Segments(encoding, units, segments)


def test_a_rendered_sms_replaces_dashes_and_accents_that_would_force_ucs2(env, event):
    """The en dash in "25–26" and the ë in "Zoë" are written so the text stays GSM-7."""
    zoe = DELEGATES[5]
    sms = render_sms(env, event, zoe, "invitation", key="k", links=LINKS)
    assert "Zoe" in sms.body and "25-26 november" in sms.body
    assert sms_segments(sms.body).encoding == "GSM-7"


# -- templates ------------------------------------------------------------------------------------


def test_a_missing_variable_fails_the_render_instead_of_printing_nothing(env, event):
    """StrictUndefined: a template that uses a link the caller did not give fails loudly."""
    without_rsvp = {k: v for k, v in LINKS.items() if k != "rsvp_url"}
    with pytest.raises(jinja2.UndefinedError, match="rsvp_url"):
        render_email(env, event, DELEGATES[0], "invitation", key="k", links=without_rsvp)


def test_check_templates_names_the_file_and_delegate_of_a_missing_variable(event, tmp_path):
    """A broken template is reported as `templates/<lang>/<name>: delegate <id>: ... is undefined`."""
    for lang in ("sv", "en"):
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "pickup.sms.txt").write_text("Hej {{ foo }}")
    only_pickup = event.model_copy(
        update={"rules": [event.rule("pickup").model_copy(update={"channels": ["sms"]})]}
    )
    problems = check_templates(make_env(tmp_path), only_pickup, [DELEGATES[2]], links=LINKS)
    assert "templates/sv/pickup.sms.txt: delegate d-3: 'foo' is undefined" in problems


def test_check_templates_reports_missing_files_and_sms_over_the_segment_limit(event, tmp_path):
    """No template file, or a text longer than the rule allows, is a problem with the file's name."""
    (tmp_path / "sv").mkdir()
    (tmp_path / "sv" / "pickup.sms.txt").write_text("x" * 161)
    only_pickup = event.model_copy(
        update={"rules": [event.rule("pickup").model_copy(update={"channels": ["sms"]})]}
    )
    problems = check_templates(make_env(tmp_path), only_pickup, [DELEGATES[0]], links=LINKS)
    assert "templates/en/pickup.sms.txt: missing template file" in problems
    assert any(p.startswith("templates/sv/pickup.sms.txt: delegate d-1: 2 SMS segments") for p in problems)


def test_the_shipped_templates_pass_the_check_for_every_kind_of_delegate(env, event):
    """Every rule's templates render in sv and en for each delegate, and every SMS is within its limit."""
    assert check_templates(env, event, DELEGATES, links=LINKS) == []


def test_html_escapes_a_delegate_name_but_plain_text_and_sms_do_not(env, event):
    """A name like <script> is escaped in the HTML part only; the text parts show it as written."""
    bad = dataclasses.replace(DELEGATES[0], name="<script>alert(1)</script> Berg")
    email = render_email(env, event, bad, "day_before", key="k", links=LINKS)
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<script>alert(1)</script>" in email.text


@pytest.mark.parametrize("template", [*RULE_TEMPLATES, "broadcast", "change_notice"])
def test_every_email_template_renders_in_both_languages_for_every_delegate(env, event, template):
    """Subject on one line, a text part, and an HTML part built on the shared phone-friendly layout."""
    for delegate in each_language([d for d in DELEGATES if d.email]):
        email = render_email(env, event, delegate, template, key="k", links=LINKS, extra=EXTRA)
        assert email.subject and "\n" not in email.subject
        assert email.to == delegate.email and email.text.strip()
        assert "max-width:600px" in email.html
        assert "<script" not in email.html and "src=" not in email.html  # no external images or scripts
        assert "{{" not in email.text + email.html


def rendered_in_full(env, event, delegate, template, extra=None) -> tuple[str, str, str]:
    """Subject, text and HTML as rendering each template file for this very delegate gives them."""
    context = build_context(event, delegate, None, LINKS, extra)
    subject, text, html = (
        env.get_template(f"{delegate.language}/{template}.{part}").render(context)
        for part in ("subject.txt", "txt", "html")
    )
    return one_line(subject), text.strip() + "\n", html


# Names with what HTML escapes, what keep_together joins, and spaces where a first name ends.
ODD_NAMES = ('Åsa & <Berit> "Lind"', "KSO-er Nilsson", "  Ola  ", "O'Brien-Öst", "Ann‑Marie Ek")


@pytest.mark.parametrize("template", [*RULE_TEMPLATES, "broadcast", "change_notice"])
def test_an_email_rendered_once_per_profile_is_what_rendering_it_for_each_delegate_gives(
    env, event, template
):
    """The shipped templates print a delegate's name and links as they are, so each email is rendered
    once per profile (language, stop, dinner, role) and filled in: the very text of a full render."""
    people = [dataclasses.replace(d, name=n) for d in DELEGATES if d.email for n in (d.name, *ODD_NAMES)]
    people += [dataclasses.replace(d, dinner=True) for d in DELEGATES[:2]]
    for delegate in each_language(people):
        made = email_template(env, event, template, email_profile(delegate), EXTRA)
        assert made.parts is not None  # the fast way, not the full render per delegate
        email = made.message(delegate, key="k", links=LINKS)
        assert (email.subject, email.text, email.html) == rendered_in_full(
            env, event, delegate, template, EXTRA
        )


def test_two_delegates_of_one_email_profile_differ_in_their_context_only_by_what_templates_may_print(event):
    """The guard on rendering once per profile: whatever else a delegate's record holds (organisation,
    RSVP, dietary needs, opt-outs…) must not reach the template context except through `delegate`,
    whose use sends the email to a full render. A field added to Delegate, or a context value derived
    from one, without adding it to `email_profile`, fails here, before one delegate's text reaches another."""
    one = DELEGATES[0]
    other = dataclasses.replace(
        one,
        id="someone-else",
        name="Berit Annan",
        email="berit@example.org",
        phone="+46701112233",
        organisation="Annan kommun",
        rsvp="no" if one.rsvp == "yes" else "yes",
        sms_opt_out=not one.sms_opt_out,
        email_opt_out=not one.email_opt_out,
        survey_answered=not one.survey_answered,
        dietary="vegan",
        comment="kommer sent",
        phone_bad=not one.phone_bad,
    )
    varied = {f.name for f in dataclasses.fields(Delegate) if getattr(one, f.name) != getattr(other, f.name)}
    profile_fields = {"language", "stop", "dinner", "role"}
    assert varied == {f.name for f in dataclasses.fields(Delegate)} - profile_fields
    assert email_profile(one) == email_profile(other)
    mine, theirs = build_context(event, one, None, LINKS), build_context(event, other, None, LINKS)
    assert mine.keys() == theirs.keys()
    differing = {key for key in mine if mine[key] != theirs[key]}
    assert differing <= {"name", "first_name", "links", "delegate"}, differing


@pytest.mark.parametrize(
    "greeting",
    [
        "{{ first_name|upper }}",
        "{% if first_name == 'Åsa' %}Hej Åsa{% else %}Hej{% endif %}",
        "{% set who = name %}{{ who }}",
        "{% filter upper %}{{ first_name }}{% endfilter %}",
        "{% macro hi() %}{{ first_name }}{% endmacro %}{{ hi() }}",
        "{{ delegate.organisation }}",
        "{{ 'Hej ' ~ first_name }}",
        "{% for link in links %}{{ link }} {% endfor %}",
        "{% autoescape false %}{{ first_name }}{% endautoescape %}",
    ],
)
def test_a_template_that_does_more_with_a_delegates_name_than_print_it_is_rendered_for_each(
    event, tmp_path, greeting
):
    """Anything but printing a delegate's own value as it is (a filter, a test, an assignment, a macro)
    could make the text depend on it: such an email is rendered in full for every delegate."""
    (tmp_path / "sv").mkdir()
    for part in ("subject.txt", "txt", "html"):
        (tmp_path / "sv" / f"note.{part}").write_text(f"{greeting} {{{{ links.rsvp_url }}}}\n")
    env = make_env(tmp_path)
    for delegate in (
        DELEGATES[2],
        dataclasses.replace(DELEGATES[2], name="Berit & <Ek>", organisation="Boden"),
    ):
        made = email_template(env, event, "note", email_profile(delegate))
        assert made.parts is None
        email = made.message(delegate, key="k", links=LINKS)
        assert (email.subject, email.text, email.html) == rendered_in_full(env, event, delegate, "note")


def test_a_payload_value_named_like_a_delegates_own_wins_in_an_email_made_per_profile(env, event, tmp_path):
    """The context's extra values (a broadcast's payload) come last, as in a full render: one called
    `first_name` is printed for everyone, not filled in per delegate."""
    (tmp_path / "sv").mkdir()
    for part in ("subject.txt", "txt", "html"):
        (tmp_path / "sv" / f"note.{part}").write_text("Hej {{ first_name }} och {{ name }}!\n")
    env = make_env(tmp_path)
    made = email_template(env, event, "note", email_profile(DELEGATES[2]), {"first_name": "alla"})
    email = made.message(DELEGATES[2], key="k", links=LINKS)
    assert email.text == "Hej alla och Åsa Lind!\n"
    assert (email.subject, email.text, email.html) == rendered_in_full(
        env, event, DELEGATES[2], "note", {"first_name": "alla"}
    )


def test_an_email_that_cannot_be_made_for_a_profile_fails_for_the_delegate_with_their_own_id(env, event):
    """A stop the event no longer has fails the render as it did before emails were made per profile:
    naming the delegate, not the stand-in the profile was rendered for."""
    gone = dataclasses.replace(DELEGATES[0], stop="harbour")
    with pytest.raises(ValueError, match="delegate d-1: unknown stop 'harbour'"):
        render_email(env, event, gone, "invitation", key="k", links=LINKS)


def test_an_email_made_for_a_profile_knows_when_a_file_it_came_from_was_edited(event, tmp_path):
    """`current()` looks at every file the email was rendered from, included ones too, so a worker that
    keeps it for a profile renders it anew after an organiser's edit."""
    shutil.copytree(ROOT / "templates", tmp_path, dirs_exist_ok=True)
    env = make_env(tmp_path)
    made = email_template(env, event, "invitation", email_profile(DELEGATES[0]))
    assert made.current()
    footer = tmp_path / "sv" / "_footer.html"
    footer.write_text(footer.read_text().replace("Frågor?", "Undrar du något?"))
    os.utime(footer, (time.time() + 5, time.time() + 5))
    assert not made.current()
    again = email_template(env, event, "invitation", email_profile(DELEGATES[0]))
    assert "Undrar du något?" in again.message(DELEGATES[0], key="k", links=LINKS).html


def test_a_worker_keeps_an_email_per_profile_until_a_file_it_came_from_is_edited(event, tmp_path):
    """Two delegates of one profile each get their own name and links from the email the worker keeps for
    the profile; after an edit of an included file the next email has the new words."""
    from pipeline.runtime import Runtime
    from pipeline.sending.worker import build_message
    from pipeline.settings import Settings
    from pipeline.store.models import LedgerRow

    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    settings = Settings(
        _env_file=None, data_dir=tmp_path, event_file=ROOT / "config" / "event.toml",
        templates_dir=tmp_path / "templates", public_url="https://kallelse.example.se",
    )  # fmt: skip
    rt = Runtime(settings)
    pair = (DELEGATES[1], dataclasses.replace(DELEGATES[1], id="d-7", name="Per Ek", email="per@lulea.se"))

    def sent(delegate: Delegate):
        row = LedgerRow(key=f"k:{delegate.id}", rule="practical", channel="email", delegate_id=delegate.id)
        return build_message(rt, row, delegate)

    def unsigned(text: str) -> str:  # a token carries the second it was signed in
        return re.sub(r"/u/[\w.-]+", "/u/TOKEN", text)

    for delegate in pair:
        email = sent(delegate)
        context = build_context(event, delegate, None, rt.signer.links_for(delegate.id))
        assert unsigned(email.html) == unsigned(
            rt.templates.get_template("sv/practical.html").render(context)
        )
        token = re.search(r"/u/([\w.-]+)", email.text)[1]
        assert (
            f"Hej {delegate.first_name}" in email.text and rt.signer.read(token, "optout", 60) == delegate.id
        )
    footer = tmp_path / "templates" / "sv" / "_footer.txt"
    footer.write_text(footer.read_text().replace("Frågor?", "Undrar du något?"))
    os.utime(footer, (time.time() + 5, time.time() + 5))
    assert "Undrar du något?" in sent(pair[0]).text


SMS_TEMPLATES = (*RULE_TEMPLATES[:2], *RULE_TEMPLATES[3:], "broadcast", "change_notice")


@pytest.mark.parametrize("template", SMS_TEMPLATES)
def test_every_sms_template_renders_in_both_languages_for_every_delegate(env, event, template):
    """SMS texts have no stray whitespace and stay within two parts (one for logistics, below)."""
    for delegate in each_language([d for d in DELEGATES if d.phone]):
        sms = render_sms(env, event, delegate, template, key="k", links=LINKS, extra=EXTRA)
        assert sms.body == sms.body.strip() and "  " not in sms.body
        assert sms_segments(sms.body).segments <= 2


@pytest.mark.parametrize("template", LOGISTICS)
def test_every_logistics_sms_is_a_single_gsm7_segment(env, event, template):
    """Day-before, pickup, dinner and room texts fit in 160 septets with å ä ö, in Swedish and English."""
    for delegate in each_language([d for d in DELEGATES if d.phone]):
        body = render_sms(env, event, delegate, template, key="k", links=LINKS).body
        counted = sms_segments(body)
        assert (counted.encoding, counted.segments) == ("GSM-7", 1), f"{counted.units} septets: {body}"


def test_swedish_texts_write_times_as_kl_09_00_and_english_as_09_00(env, event):
    """Local times: "kl. 09.00" and "torsdag 25 november" in Swedish, "09:00" in English."""
    hotel = DELEGATES[0]
    sv = render_email(env, event, hotel, "practical", key="k", links=LINKS)
    en = render_email(
        env, event, dataclasses.replace(hotel, language="en"), "practical", key="k", links=LINKS
    )
    assert "torsdag 25 november kl. 09.00" in sv.text
    assert "Thursday 25 November at 09:00" in en.text


def test_the_pickup_text_gives_the_delegates_own_stop_and_whom_to_call(env, event):
    """The airport rider hears "ca kl. 09.30" at the airport; the duty contact's name and phone follow."""
    sms = render_sms(env, event, DELEGATES[1], "pickup", key="k", links=LINKS)
    assert "ca kl. 09.30" in sms.body and "Skellefteå flygplats" in sms.body
    assert "Johan Scherlin 070-919 71 35" in sms.body
    hotel = render_sms(env, event, DELEGATES[0], "pickup", key="k", links=LINKS)
    assert "kl. 09.00 från The Wood Hotel" in hotel.body


def test_the_day2_room_text_tells_a_kso_and_an_official_their_own_room(env, event):
    """A KSO is sent to the politicians' talk, everyone else to the officials' talk, at kl. 10.15."""
    kso = render_sms(env, event, DELEGATES[0], "day2_room", key="k", links=LINKS).body
    official = render_sms(env, event, DELEGATES[1], "day2_room", key="k", links=LINKS).body
    assert "kl. 10.15: Samtal för KSO-er (politiker), lokalen meddelas senare." in kso
    assert "Samtal för tjänstemän, lokalen meddelas senare." in official
    confirmed = confirm_room(event, "kso", "Sal Skellefteå")
    assert (
        "kl. 10.15: Samtal för KSO-er (politiker) i Sal Skellefteå."
        in render_sms(env, confirmed, DELEGATES[0], "day2_room", key="k", links=LINKS).body
    )


def test_the_invitation_lists_both_days_with_speakers_and_asks_for_an_answer(env, event):
    """The email has both days, the personal RSVP link and JA/NEJ by reply; the SMS asks for JA or NEJ."""
    email = render_email(env, event, DELEGATES[2], "invitation", key="k", links=LINKS)
    for expected in (
        "TORSDAG 25 NOVEMBER",
        "FREDAG 26 NOVEMBER",
        "Ellen Heldahl",
        "Karin Bodin",
        LINKS["rsvp_url"],
    ):
        assert expected in email.text
    assert "JA eller NEJ" in email.text
    assert (
        "Svara JA eller NEJ" in render_sms(env, event, DELEGATES[2], "invitation", key="k", links=LINKS).body
    )


@pytest.mark.parametrize(
    ("language", "hotel", "airport"),
    [
        ("sv", "       kl. 09.00: The Wood Hotel", "       ca kl. 09.30: Skellefteå flygplats"),
        ("en", "       09:00: The Wood Hotel", "       about 09:30: Skellefteå flygplats"),
    ],
)
def test_the_programme_lists_each_bus_stop_on_its_own_indented_line(env, event, language, hotel, airport):
    """The shared programme keeps one line per stop, indented under the bus, in each language's words."""
    delegate = dataclasses.replace(DELEGATES[2], language=language)
    lines = render_email(env, event, delegate, "invitation", key="k", links=LINKS).text.splitlines()
    assert any(line.startswith(hotel) for line in lines)
    assert any(line.startswith(airport) for line in lines)


def test_a_change_notice_tells_the_new_local_time(env, event):
    """An aware UTC time in `extra` is shown in the event's zone: 08:15Z is kl. 09.15 in Skellefteå."""
    sms = render_sms(env, event, DELEGATES[0], "change_notice", key="k", links=LINKS, extra=EXTRA)
    assert "nu kl. 09.15 (tidigare kl. 09.00)" in sms.body


def test_the_context_has_local_times_and_the_delegates_session(event):
    """Times in the context are aware and local; the session is found from the breakout item."""
    ctx = build_context(event, DELEGATES[0], "pickup", LINKS)
    assert ctx["stop"].time == datetime(2021, 11, 25, 9, 0, tzinfo=ZoneInfo("Europe/Stockholm"))
    assert str(ctx["session"].room) == "lokalen meddelas senare"
    assert [d.date.day for d in ctx["days"]] == [25, 26]


def test_the_programme_rendered_once_for_many_emails_is_what_each_would_render_itself(event):
    """Workers share one context per event version and language, so the programme partials are rendered
    once and reused: every email is still the one a fresh render gives, with its own name and links."""
    shared = {lang: event_context(event, lang) for lang in ("sv", "en")}
    signer = LinkSigner("a secret long enough for the tests", "https://kallelse.example.se")
    cached_env, fresh_env = make_env(ROOT / "templates"), make_env(ROOT / "templates")
    twins = [dataclasses.replace(d, language=lang) for d in DELEGATES if d.email for lang in ("sv", "en")]
    for template in ("invitation", "practical"):
        for delegate in twins * 2:  # the second round comes from the cache
            links = signer.links_for(delegate.id)
            kwargs = {"key": f"k:{delegate.id}", "links": links, "extra": EXTRA}
            lang = delegate.language
            cached = render_email(cached_env, event, delegate, template, shared=shared[lang], **kwargs)
            fresh = render_email(fresh_env, event, delegate, template, **kwargs)  # its own context
            assert cached == fresh
            assert delegate.first_name in cached.text and links["optout_url"] in cached.html


def test_a_cached_programme_still_reports_the_unconfirmed_facts_it_shows(env, event):
    """`kallelse check` learns what a message shows by rendering it: a programme from the cache reports
    the airport's unconfirmed address as the first render did."""
    shared = event_context(event, "sv")
    hotel = DELEGATES[0]
    for _ in range(2):
        _, seen = facts_shown(
            lambda: render_email(env, event, hotel, "invitation", key="k", links=LINKS, shared=shared)
        )
        assert "stops.airport.address" in seen


def test_a_programme_partial_sees_only_the_days_the_stops_and_the_language(tmp_path, event):
    """What is rendered once for everyone cannot show one delegate's name: a partial that reads anything
    but days, stops and lang fails, so `kallelse check` reports it before anything is sent."""
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    partial = tmp_path / "templates" / "_programme.txt"
    partial.write_text(partial.read_text(encoding="utf-8") + "{{ first_name }}\n", encoding="utf-8")
    with pytest.raises(jinja2.UndefinedError, match="first_name"):
        render_email(
            make_env(tmp_path / "templates"), event, DELEGATES[0], "invitation", key="k", links=LINKS
        )


# -- the calendar file -------------------------------------------------------------------------------


STAMP = datetime(2021, 10, 7, 7, 0, tzinfo=UTC)
STOCKHOLM = ZoneInfo("Europe/Stockholm")


def calendar(event: Event, delegate: Delegate, **kwargs) -> bytes:
    return delegate_ics(
        event, delegate, stamp=kwargs.pop("stamp", STAMP), rsvp_url=LINKS["rsvp_url"], **kwargs
    )


def test_the_ics_is_byte_identical_for_the_same_input_and_stamped_when_made(event):
    """DTSTAMP is the `stamp` given (the moment the file is made), so the same input gives the same bytes."""
    assert calendar(event, DELEGATES[0], sequence=2) == calendar(event, DELEGATES[0], sequence=2)
    later = datetime(2021, 11, 20, 9, 30, tzinfo=UTC)
    for vevent in icalendar.Calendar.from_ical(calendar(event, DELEGATES[0], stamp=later)).walk("VEVENT"):
        assert vevent.decoded("DTSTAMP") == later


@pytest.mark.parametrize("lang", ["sv", "en"])
def test_a_calendar_made_once_per_profile_is_each_delegates_own_ics_byte_for_byte(event, lang):
    """What a worker sends from a template shared by delegates of one profile (language, stop, dinner)
    is exactly `delegate_ics` of each of them: their own stamp and RSVP link, folded and escaped alike."""
    stamps = (STAMP, datetime(2021, 11, 20, 9, 30, 15, tzinfo=STOCKHOLM))
    links = (
        LINKS["rsvp_url"],
        "https://kallelse.example.se/r/" + "x" * 170,  # folds at another place than the stand-in did
        "https://kallelse.example.se/r/a,b;c\\d",  # characters TEXT escapes and a URI does not
        None,
    )
    people = [
        dataclasses.replace(d, language=lang, dinner=dinner) for d in DELEGATES for dinner in (None, True)
    ]
    made: dict = {}
    for person, stamp, link in itertools.product(people, stamps, links):
        key = (profile(person), link is not None)
        template = made.setdefault(key, calendar_template(event, key[0], sequence=4, with_rsvp=key[1]))
        direct = delegate_ics(event, person, stamp=stamp, sequence=4, rsvp_url=link)
        assert template.fill(stamp, link) == direct, (person, stamp, link)
    assert len(made) == 2 * 3 * 2  # with/without a link × three stops (none, hotel, airport) × dinner


def test_the_calendars_own_folding_is_the_librarys():
    """`ics.fold` (fast) folds every line where icalendar would: ASCII, Swedish letters, four-byte
    characters, and the backslashes and carets it keeps with what follows."""
    from icalendar.parser import Contentline

    from pipeline.ics import fold

    rng = random.Random(11)
    alphabet = "abc ,;:\\^åäöÅ€😀\t"
    for _ in range(3000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))
        assert fold(line) == Contentline(line).to_ical(), line


def test_the_ics_is_published_with_one_event_per_day_and_stable_uids(event):
    """PUBLISH (no Accept/Decline), no ATTENDEE; one VEVENT per day with UIDs from the event and day."""
    cal = icalendar.Calendar.from_ical(calendar(event, DELEGATES[0], sequence=3))
    assert str(cal["METHOD"]) == "PUBLISH"
    vevents = cal.walk("VEVENT")
    assert [str(v["UID"]) for v in vevents] == ["sik-2021-day1@kallelse", "sik-2021-day2@kallelse"]
    assert all(int(v["SEQUENCE"]) == 3 and "ATTENDEE" not in v for v in vevents)
    day1, day2 = (v.decoded("DTSTART") for v in vevents)
    assert (day1.date(), day2.date()) == (datetime(2021, 11, 25).date(), datetime(2021, 11, 26).date())
    assert vevents[0].decoded("DTEND").date() == day1.date()  # the night is not blocked
    assert vevents[1].decoded("DTEND") == datetime(2021, 11, 26, 13, 0, tzinfo=STOCKHOLM)
    assert vevents[0]["DTSTART"].params["TZID"] == "Europe/Stockholm" and cal.walk("VTIMEZONE")


@pytest.mark.parametrize(
    ("delegate", "start", "where"),
    [
        pytest.param(DELEGATES[0], datetime(2021, 11, 25, 9, 0), "The Wood Hotel, Torggatan 3", id="hotel"),
        pytest.param(DELEGATES[1], datetime(2021, 11, 25, 9, 30), "Skellefteå flygplats", id="airport"),
        pytest.param(DELEGATES[2], datetime(2021, 11, 25, 12, 0), "The Wood Hotel, Torggatan 3", id="no-bus"),
    ],
)
def test_the_first_day_starts_at_the_delegates_own_pickup_point_and_time(event, delegate, start, where):
    """The hotel rider starts at 09.00 at the hotel, the airport rider at 09.30 at the airport, and one
    who does not ride the bus at lunch at the venue."""
    day1 = icalendar.Calendar.from_ical(calendar(event, delegate)).walk("VEVENT")[0]
    assert day1.decoded("DTSTART") == start.replace(tzinfo=STOCKHOLM)
    assert str(day1["LOCATION"]).startswith(where)


def test_the_ics_is_in_the_delegates_language_with_their_rsvp_link(event):
    """An English delegate's calendar is in English; the description links to their RSVP page."""
    english = dataclasses.replace(DELEGATES[0], language="en")
    day1 = icalendar.Calendar.from_ical(calendar(event, english)).walk("VEVENT")[0]
    assert str(day1["SUMMARY"]) == "Innovation meeting of the Swedish Industrial Municipalities, day 1"
    description = str(day1["DESCRIPTION"])
    assert "THURSDAY 25 NOVEMBER" in description and "Lunch together" in description
    assert f"Your answer (change it any time): {LINKS['rsvp_url']}" in description
    swedish = icalendar.Calendar.from_ical(calendar(event, DELEGATES[0])).walk("VEVENT")[0]
    assert "dag 1" in str(swedish["SUMMARY"]) and "Gemensam lunch" in str(swedish["DESCRIPTION"])


def test_dinner_is_in_the_calendar_only_for_those_who_eat(event):
    """Day 1 ends after dinner (22.00) for a diner, after the last talk (17.00) for one who declined."""
    ends = [
        icalendar.Calendar.from_ical(calendar(event, dataclasses.replace(DELEGATES[0], dinner=eats)))
        .walk("VEVENT")[0]
        .decoded("DTEND")
        for eats in (True, False)
    ]
    assert [e.hour for e in ends] == [22, 17]


def test_a_second_parser_reads_the_same_days_times_and_uids(event):
    """vobject (another parser than the one that wrote it) reads the same two days, starts and UIDs."""
    parsed = vobject.readOne(calendar(event, DELEGATES[1]).decode("utf-8"))
    assert parsed.method.value == "PUBLISH"
    events = parsed.vevent_list
    assert [e.uid.value for e in events] == ["sik-2021-day1@kallelse", "sik-2021-day2@kallelse"]
    assert events[0].dtstart.value == datetime(2021, 11, 25, 9, 30, tzinfo=STOCKHOLM)
    assert "Skellefteå flygplats" in events[0].location.value
    assert not any(hasattr(e, "attendee") for e in events)


def test_an_invitation_email_carries_the_ics_with_a_matching_method(env, event):
    """The attachment's MIME type names the same METHOD as the calendar inside it."""
    ics = calendar(event, DELEGATES[0], sequence=1)
    email = render_email(env, event, DELEGATES[0], "invitation", key="k", links=LINKS, ics=ics)
    (attachment,) = email.attachments
    assert attachment.data == ics
    assert attachment.content_type.startswith("text/calendar; method=PUBLISH")


# -- facts not yet confirmed, and messages that follow the person -------------------------------------


@pytest.mark.parametrize(
    ("language", "expected"),
    [("sv", "Skellefteå flygplats, mötesplatsen meddelas senare."), ("en", "meeting point to be announced")],
)
def test_an_unconfirmed_airport_meeting_point_is_announced_as_such_never_invented(
    env, event, language, expected
):
    """The seed names no meeting point at the airport: the practical email says so, in the reader's
    language, and promises nothing the seed does not say about the flight."""
    rider = dataclasses.replace(DELEGATES[1], language=language)
    email = render_email(env, event, rider, "practical", key="k", links=LINKS)
    assert expected in email.text and expected in email.html
    for invented in ("Flygplatsvägen", "morgonflyget", "morning flight"):
        assert invented not in email.text + email.html


def test_the_practical_email_mentions_dinner_only_to_those_who_eat_with_us(env, event):
    """Dinner (kl. 18.00) is in the practical details of a delegate who eats, not of one who declined it."""
    eats = dataclasses.replace(DELEGATES[0], dinner=True)
    declined = dataclasses.replace(DELEGATES[0], dinner=False)
    assert (
        "Middagen börjar torsdag 25 november kl. 18.00"
        in render_email(env, event, eats, "practical", key="k", links=LINKS).text
    )
    text = render_email(env, event, declined, "practical", key="k", links=LINKS).text
    assert "Middagen börjar" not in text.split("PROGRAM")[0]


def test_a_phone_only_delegate_gets_the_practical_details_by_sms_with_the_programme_link(env, event):
    """Zoë has no email: her practical SMS has her pickup, the public programme link and whom to call."""
    sms = render_sms(env, event, DELEGATES[5], "practical", key="k", links=LINKS)
    assert "ca kl. 09.30 vid Skellefteå flygplats" in sms.body
    assert LINKS["programme_url"] in sms.body and "070-919 71 35" in sms.body
    assert sms_segments(sms.body).segments <= event.event.sms_max_segments


def test_phone_numbers_and_kso_er_do_not_break_across_lines_in_html(env, event):
    """Email HTML joins a phone number with non-breaking spaces and "KSO-er" with a non-breaking hyphen;
    the SMS keeps plain characters (GSM-7), and links are never touched."""
    email = render_email(env, event, DELEGATES[0], "invitation", key="k", links=LINKS)
    assert "070-919\u00a071\u00a035" in email.html and "KSO\u2011er" in email.html
    assert 'href="tel:+46709197135"' in email.html and LINKS["rsvp_url"] in email.html
    sms = render_sms(env, event, DELEGATES[0], "day2_room", key="k", links=LINKS)
    assert "070-919 71 35" in sms.body and "KSO-er" in sms.body
    assert sms_segments(sms.body).encoding == "GSM-7"


@pytest.mark.parametrize(
    ("template", "part", "slip", "fixed"),
    [
        ("day_before", "txt", "eller har frågor?", "Är du försenad eller har du frågor?"),
        ("survey_reminder", "subject.txt", "Påminnelse: två minuter om", "Enkäten tar två minuter"),
        ("day2_room", "txt", "välkommen till samtal för", "Din grupp: Samtal för KSO-er (politiker)"),
    ],
)
def test_the_swedish_wording_slips_are_fixed(env, event, template, part, slip, fixed):
    """The slips a Swedish reader found are gone, and what replaced them is there."""
    email = render_email(env, event, DELEGATES[0], template, key="k", links=LINKS)
    text = email.subject if part == "subject.txt" else email.text
    assert slip not in text and fixed in text


def test_the_survey_question_about_the_tour_reads_as_swedish(event):
    """ "Guidade turen" needs its article: "Den guidade turen"."""
    assert next(q for q in event.survey if q.id == "tour").text.sv.startswith("Den guidade turen")


@pytest.mark.parametrize(
    ("language", "own", "not_theirs"),
    [
        ("sv", "Bussen hämtar dig torsdag 25 november ca kl. 09.30 vid Skellefteå flygplats.", "kl. 09.00"),
        ("en", "Your bus: Thursday 25 November, about 09:30 at Skellefteå flygplats.", "09:00"),
    ],
)
def test_an_airport_riders_invitation_sms_gives_their_own_pickup_not_the_hotel_departure(
    env, event, language, own, not_theirs
):
    """The invitation SMS follows the person: the airport rider reads 09.30 at the airport, in two parts."""
    rider = dataclasses.replace(DELEGATES[1], language=language)
    sms = render_sms(env, event, rider, "invitation", key="k", links=LINKS)
    assert own in sms.body and not_theirs not in sms.body
    assert sms_segments(sms.body).segments <= event.event.sms_max_segments


def test_the_practical_sms_does_not_say_we_meet_twice(env, event):
    """ "Om en vecka ses vi … Vi ses …" read badly: the SMS opens with how long is left instead."""
    no_stop = dataclasses.replace(DELEGATES[5], stop=None)
    sv = render_sms(env, event, no_stop, "practical", key="k", links=LINKS).body
    assert sv.startswith(
        "Hej Zoe! Nu är det en vecka kvar till mötet i Skellefteå. Vi ses torsdag 25 november"
    )
    en = render_sms(
        env, event, dataclasses.replace(no_stop, language="en"), "practical", key="k", links=LINKS
    ).body
    assert en.count("We meet") == 1


def test_a_delegate_without_a_stop_is_sent_to_the_rsvp_page_to_choose_one(env, event):
    """The practical email offers the bus through the RSVP page (which records a stop), not "reply to this
    email", whose reply would be read as an RSVP."""
    email = render_email(env, event, DELEGATES[2], "practical", key="k", links=LINKS)
    assert f"Välj hållplats på din svarssida: {LINKS['rsvp_url']}" in email.text
    assert "Svara på det här mejlet" not in email.text and LINKS["rsvp_url"] in email.html


def test_a_context_made_once_per_language_renders_exactly_like_one_made_per_message(env, event):
    """Workers reuse `event_context` across messages: every rule's texts come out the same."""
    shared = {lang: event_context(event, lang) for lang in ("sv", "en")}
    for rule, delegate, lang in itertools.product(event.rules, DELEGATES, ("sv", "en")):
        template, person = rule.template, dataclasses.replace(delegate, language=lang)
        if person.phone and "sms" in rule.channels:
            alone = render_sms(env, event, person, template, key="k", links=LINKS)
            reused = render_sms(env, event, person, template, key="k", links=LINKS, shared=shared[lang])
            assert reused == alone
        if person.email and "email" in rule.channels:
            alone_mail = render_email(env, event, person, template, key="k", links=LINKS)
            again = render_email(env, event, person, template, key="k", links=LINKS, shared=shared[lang])
            assert again == alone_mail


class CountingSigner(LinkSigner):
    def __init__(self) -> None:
        super().__init__("secret", "https://kallelse.example.se")
        self.signed: list[str] = []

    def token(self, purpose: str, delegate_id: str) -> str:
        self.signed.append(purpose)
        return super().token(purpose, delegate_id)


def test_a_personal_link_is_signed_only_when_the_template_shows_it(env, event):
    """A pickup SMS shows no link, so nothing is signed; an invitation signs the RSVP link it shows."""
    signer = CountingSigner()
    person = DELEGATES[1]
    render_sms(env, event, person, "pickup", key="k", links=signer.lazy_links(person.id))
    assert signer.signed == []
    mail = render_email(env, event, person, "invitation", key="k", links=signer.lazy_links(person.id))
    assert "rsvp" in signer.signed
    token = re.search(r"https://kallelse\.example\.se/r/(\S+)", mail.text)[1]
    assert signer.read(token, "rsvp", max_age=60) == person.id
    assert dict(signer.lazy_links(person.id)) == signer.links_for(person.id)


@pytest.mark.parametrize(
    ("at", "lang", "year", "expected"),
    [
        (datetime(2021, 11, 25, 9, 0), "sv", False, "tors 25 nov kl. 09.00"),
        (datetime(2021, 11, 26, 15, 5), "sv", False, "fre 26 nov kl. 15.05"),
        (datetime(2021, 10, 4, 9, 0), "sv", False, "mån 4 okt kl. 09.00"),
        (datetime(2021, 11, 25, 9, 0), "en", False, "Thu 25 Nov 09:00"),
        (datetime(1970, 1, 1, 1, 0), "sv", True, "tors 1 jan 1970 kl. 01.00"),
    ],
)
def test_a_dashboard_time_reads_as_people_write_it(at, lang, year, expected) -> None:
    """Weekday, day, month and "kl." in Swedish; the year only when it is not the event's."""
    assert short_when(at, lang, year=year) == expected


def test_a_worker_environment_picks_up_an_edited_template_after_its_check_interval_not_per_render(tmp_path):
    """Workers look at template files once per interval (a stat() per render cost more than the render);
    the web and the CLI (no interval) see an edit at once."""
    (tmp_path / "note.txt").write_text("först")
    worker_env, cli_env = make_env(tmp_path, check_every=0.3), make_env(tmp_path)
    assert worker_env.get_template("note.txt").render() == "först"
    assert cli_env.get_template("note.txt").render() == "först"
    (tmp_path / "note.txt").write_text("sedan")
    os.utime(tmp_path / "note.txt", (time.time() + 5, time.time() + 5))  # a new mtime whatever the clock
    assert cli_env.get_template("note.txt").render() == "sedan"
    assert worker_env.get_template("note.txt").render() == "först"
    time.sleep(0.35)
    assert worker_env.get_template("note.txt").render() == "sedan"
