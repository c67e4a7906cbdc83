"""The organiser's `kallelse` command. Settings are read here, once, and passed down."""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import click

from pipeline.errors import ConfigError, DelegateImportError
from pipeline.runtime import Runtime
from pipeline.settings import Settings
from pipeline.states import LedgerState
from pipeline.timetable import Event

EXAMPLE_DELEGATES = Path("config/delegates.example.csv")

# Every command gets the one Runtime that `main` builds (settings, store, event, templates, signer, clock).
pass_rt = click.make_pass_decorator(Runtime)
S = LedgerState


class KallelseGroup(click.Group):
    """Outages and mistakes (a bad DATABASE_URL, an unreachable database or broker, a bad event file) end
    a command in one line saying what and where, exit status 1; only a bug shows a traceback."""

    def invoke(self, ctx: click.Context):
        from pipeline.outages import describe

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            what = describe(e)
            if what is None:
                raise
            click.echo(f"kallelse: {what}", err=True)
            ctx.exit(1)


@click.group(cls=KallelseGroup)
@click.option(
    "--event", "event_file", type=click.Path(path_type=Path), help="Event file (default: EVENT_FILE)."
)
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@click.version_option(package_name="kallelse")
@click.pass_context
def main(ctx: click.Context, event_file: Path | None, verbose: bool) -> None:
    """kallelse: the right message to every delegate at the right time, by email and SMS."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # `main(args, obj=settings)` hands the command its Settings (tests); otherwise the environment's.
    settings = ctx.obj if isinstance(ctx.obj, Settings) else Settings()
    if event_file is not None:
        settings = settings.model_copy(update={"event_file": event_file})
    ctx.obj = Runtime(settings)
    ctx.call_on_close(ctx.obj.close)


def fail(problems: list[str] | str) -> NoReturn:
    for line in [problems] if isinstance(problems, str) else problems:
        click.echo(line, err=True)
    sys.exit(1)


def parse_time(value: str | None, event: Event) -> datetime | None:
    """ISO 8601; without an offset it is the event's local time; a bare date is its midnight."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a time like 2021-11-25T09:00 or 2021-11-25T09:00+01:00"
        ) from None
    return event.local(parsed) if parsed.tzinfo is None else parsed


def read_delegate_file(path: Path, event: Event):
    from pipeline.delegates import read_delegates

    try:
        return read_delegates(path, {s.id for s in event.stops})
    except DelegateImportError as e:
        fail(str(e))
        raise  # unreachable; keeps type checkers calm


# -- check ----------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--delegates",
    "delegates_file",
    type=click.Path(path_type=Path),
    help=f"Also check a delegate file (default: render templates for {EXAMPLE_DELEGATES}).",
)
@pass_rt
def check(rt: Runtime, delegates_file: Path | None) -> None:
    """Validate the event file, every template and a delegate file."""
    from pipeline.facts import describe_showings, showings
    from pipeline.links import LinkSigner
    from pipeline.render import check_templates
    from pipeline.safety import unsafe_settings

    event = _event_or_fail(rt)
    problems: list[str] = []
    sample = delegates_file or (EXAMPLE_DELEGATES if EXAMPLE_DELEGATES.exists() else None)
    delegates = []
    if sample is not None:
        result = read_delegate_file(sample, event)
        delegates = result.delegates
        if delegates_file is not None:
            problems += result.errors
    signer = LinkSigner("check", rt.settings.public_url)
    problems += check_templates(rt.templates, event, delegates, links=signer.links_for("check"))
    problems += [f"settings: {problem}" for problem in unsafe_settings(rt.settings)]
    if problems:
        fail(problems)
    click.echo(f"{rt.settings.event_file}: ok ({len(event.items)} agenda items, {len(event.rules)} rules)")
    click.echo(f"{rt.settings.templates_dir}: ok (rendered for {len(delegates)} delegates from {sample})")
    for line in describe_showings(event, showings(rt.templates, event, delegates, signer.links_for("check"))):
        click.echo(line)


# -- delegates ------------------------------------------------------------------------------------


@main.group()
def delegates() -> None:
    """Import and list delegates."""


@delegates.command("import")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check the file and say what would change; store nothing.")
@click.option("--strict", is_flag=True, help="Store nothing if any row is bad.")
@click.option(
    "--allow-shared-contact",
    is_flag=True,
    help="Store a new person whose email or phone another delegate already has (a shared mailbox).",
)
@pass_rt
def import_delegates(
    rt: Runtime, file: Path, dry_run: bool, strict: bool, allow_shared_contact: bool
) -> None:
    """Import delegates from a CSV file (comma or semicolon; UTF-8 or Windows-1252)."""
    from pipeline.store.people import upsert_delegates

    result = read_delegate_file(file, _event_or_fail(rt))
    for line in result.errors:
        click.echo(line, err=True)
    rejected = len(result.errors) > 0
    if strict and rejected and not dry_run:
        click.echo(f"{len(result.delegates)} good rows; nothing stored (--strict and some rows are bad).")
        sys.exit(1)
    with rt.store.session() as session:
        counts = upsert_delegates(
            session,
            result.delegates,
            datetime.now(UTC),
            allow_shared_contact=allow_shared_contact,
            dry_run=dry_run,
        )
    where = {delegate_id: f"{file}:{line}" for delegate_id, line in result.lines.items()}
    refused = [] if allow_shared_contact else counts.shared
    for shared in refused:
        click.echo(
            f"{where[shared.delegate_id]}: {shared.column}: already used by delegate {shared.owner_id} "
            f"({shared.owner_name})",
            err=True,
        )
    if refused:
        click.echo(
            "rows whose email or phone is another delegate's were not stored; if they are different people "
            "(a shared mailbox or switchboard), import again with --allow-shared-contact",
            err=True,
        )
    for kept in counts.kept:
        click.echo(
            f"{where[kept.delegate_id]}: rsvp: the file says {kept.file_answer}, but {kept.delegate_id} "
            f"({kept.name}) answered {kept.kept_answer} by {kept.source} on {kept.at:%Y-%m-%d}; kept "
            f"{kept.kept_answer}"
        )
    rejected = rejected or bool(refused)
    if dry_run:
        click.echo(
            f"{len(result.delegates) - len(refused)} good rows; nothing stored (--dry-run). It would make: "
            f"{counts.added} added, {counts.updated} updated, {counts.unchanged} unchanged"
        )
        sys.exit(1 if rejected else 0)
    click.echo(
        f"{file}: {counts.added} added, {counts.updated} updated, {counts.unchanged} unchanged"
        + ("; rows with errors were not stored (see above)" if rejected else "")
    )
    sys.exit(1 if rejected else 0)


def _delegate_options(command):
    """The options that name one delegate's fields, for `delegates add` and `delegates edit`."""
    for name, help_ in reversed(
        [
            ("name", "Full name."),
            ("email", "Email address."),
            ("phone", "Mobile number (070-123 45 67 or +46…)."),
            ("language", "sv or en."),
            ("organisation", "Organisation."),
            ("role", "Role (kso, official, …)."),
            ("stop", "Bus stop id from the event file, or empty for none."),
            ("dinner", "yes or no."),
        ]
    ):
        command = click.option(f"--{name}", name, help=help_)(command)
    return command


@delegates.command("add")
@click.argument("delegate_id", metavar="ID")
@_delegate_options
@pass_rt
def add_delegate(rt: Runtime, delegate_id: str, **fields: str | None) -> None:
    """Add one delegate (checked as an imported row is); the scheduler plans their messages."""
    _save_delegate(rt, delegate_id, fields, new=True)


@delegates.command("edit")
@click.argument("delegate_id", metavar="ID")
@_delegate_options
@pass_rt
def edit_delegate(rt: Runtime, delegate_id: str, **fields: str | None) -> None:
    """Change the given fields of one delegate; their answers and history stay."""
    _save_delegate(rt, delegate_id, fields, new=False)


def _save_delegate(rt: Runtime, delegate_id: str, fields: dict[str, str | None], *, new: bool) -> None:
    from pipeline.store.people import save_one

    event = _event_or_fail(rt)
    values = {"id": delegate_id} | {k: v for k, v in fields.items() if v is not None}
    with rt.store.session() as session:
        problems = save_one(
            session, values, {s.id for s in event.stops}, datetime.now(UTC), "command line", new=new
        )
        if problems:
            session.rollback()
    if problems:
        fail(problems)
    click.echo(f"{delegate_id}: {'added' if new else 'saved'}")


@delegates.command("cancel")
@click.argument("delegate_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_rt
def cancel_delegate_command(rt: Runtime, delegate_id: str, yes: bool) -> None:
    """Cancel one delegate: their planned messages are stopped; what was sent stays in the history."""
    from pipeline.store.people import cancel_delegate

    if not yes:
        click.confirm(f"Cancel {delegate_id} and stop their planned messages?", abort=True)
    with rt.store.session() as session:
        stopped = cancel_delegate(session, delegate_id, datetime.now(UTC))
    if stopped is None:
        fail(f"no active delegate {delegate_id!r} (see `kallelse delegates list`)")
    click.echo(f"{delegate_id}: cancelled; {stopped} planned messages stopped")


@delegates.command("list")
@pass_rt
def list_delegates(rt: Runtime) -> None:
    """List stored delegates."""
    from pipeline.store.people import load_delegates

    with rt.store.session() as session:
        rows = load_delegates(session)
    for d in rows:
        click.echo(
            f"{d.id:12} {d.name:28} {d.language} {d.role:9} {d.stop or '-':8} rsvp={d.rsvp:4} "
            f"{d.email or '-'} {d.phone or '-'}"
        )
    click.echo(f"{len(rows)} delegates")


# -- db -------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command()
@pass_rt
def upgrade(rt: Runtime) -> None:
    """Apply schema migrations (they are also applied automatically on start)."""
    rt.store.close()
    click.echo(f"database is up to date ({_safe_url(rt.settings.effective_database_url)})")


def _safe_url(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


# -- plan -----------------------------------------------------------------------------------------


@main.command("plan")
@click.option("--now", help="Plan as of this time (default: now). ISO 8601; local time without offset.")
@click.option("--from", "since", help="Show sends due from this time.")
@click.option("--until", help="Show sends due until this time.")
@click.option("--delegate", "delegate_id", help="Only this delegate's messages.")
@click.option(
    "--delegates",
    "delegates_file",
    type=click.Path(path_type=Path, exists=True),
    help="Plan for a delegate file instead of the stored delegates.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_rt
def plan_command(
    rt: Runtime,
    now: str | None,
    since: str | None,
    until: str | None,
    delegate_id: str | None,
    delegates_file: Path | None,
    fmt: str,
) -> None:
    """Show the communication schedule: local due time, rule, channel, recipient, state."""
    from pipeline.planner import plan
    from pipeline.store import ledger
    from pipeline.store.people import load_delegates

    event = _event_or_fail(rt)
    at = parse_time(now, event) or datetime.now(UTC)
    if delegates_file is not None:
        people, view = read_delegate_file(delegates_file, event).delegates, {}
    else:
        with rt.store.session() as session:
            people = load_delegates(session)
            view = ledger.ledger_view(session, event.event.id)
    if delegate_id:
        people = [d for d in people if d.id == delegate_id]
    sends = plan(event, people, view, at)
    lo, hi = parse_time(since, event), parse_time(until, event)
    sends = [s for s in sends if (lo is None or s.due_at >= lo) and (hi is None or s.due_at <= hi)]
    sends.sort(key=lambda s: (s.due_at, s.rule, s.delegate, s.channel))
    names = {d.id: d for d in people}
    if fmt == "json":
        click.echo(json.dumps([_send_json(s, event, names) for s in sends], ensure_ascii=False, indent=2))
        return
    for s in sends:
        d = names[s.delegate]
        to = d.phone if s.channel == "sms" else d.email
        click.echo(
            f"{s.due_at.astimezone(event.tz):%Y-%m-%d %H:%M}  {s.rule:20} {s.channel:5} "
            f"{d.name[:26]:26} {to:28} {s.status}{'  (' + s.reason + ')' if s.reason else ''}"
        )
    click.echo(
        f"{len(sends)} messages for {len(people)} delegates, as of {at.astimezone(event.tz):%Y-%m-%d %H:%M}"
    )


def _send_json(s, event: Event, names) -> dict:
    d = names[s.delegate]
    return {
        "key": s.key,
        "rule": s.rule,
        "channel": s.channel,
        "delegate": s.delegate,
        "name": d.name,
        "to": d.phone if s.channel == "sms" else d.email,
        "due_at": s.due_at.astimezone(event.tz).isoformat(),
        "expires_at": s.expires_at.astimezone(event.tz).isoformat() if s.expires_at else None,
        "state": s.status,
        "reason": s.reason,
    }


def _event_or_fail(rt: Runtime) -> Event:
    try:
        return rt.event
    except ConfigError as e:
        fail(e.problems)


# -- preview ------------------------------------------------------------------------------------


@main.command()
@click.argument("delegate_id", metavar="DELEGATE")
@click.option("--rule", "rule_id", help="Only this rule's messages (an id from the event file).")
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the email's HTML here (several emails: FILE-<rule>.html).",
)
@click.option("--now", help="Plan as of this time (default: now). ISO 8601; local time without offset.")
@pass_rt
def preview(
    rt: Runtime, delegate_id: str, rule_id: str | None, html_file: Path | None, now: str | None
) -> None:
    """Print every message planned for one delegate, as they will receive it. Sends nothing."""
    from pipeline.preview import show

    event = _event_or_fail(rt)
    if rule_id and rule_id not in {r.id for r in event.rules}:
        fail(f"unknown rule {rule_id!r}: the event's rules are {', '.join(r.id for r in event.rules)}")
    delegate, planned = _planned_for(rt, event, delegate_id, parse_time(now, event) or datetime.now(UTC))
    planned = [p for p in planned if rule_id is None or p.rule == rule_id]
    links = rt.signer.links_for(delegate.id)
    click.echo(f"{delegate.name} ({delegate.id}): SMS {delegate.phone or '-'}, email {delegate.email or '-'}")
    shown = [show(rt.templates, event, delegate, p, links) for p in planned]
    for item in shown:
        _print_shown(item, event)
    if html_file is not None:
        _write_html(shown, html_file)
    click.echo(f"\n{len(shown)} messages for {delegate.id}" + (f" (rule {rule_id})" if rule_id else ""))


def _planned_for(rt: Runtime, event: Event, delegate_id: str, now: datetime):
    from pipeline.planner import plan
    from pipeline.preview import Planned
    from pipeline.store import ledger
    from pipeline.store.people import load_delegates

    with rt.store.session() as session:
        people = load_delegates(session, [delegate_id])
        if not people:
            fail(f"no delegate {delegate_id!r} (see `kallelse delegates list`)")
        view = ledger.ledger_view(session, event.event.id, [delegate_id])
        extra = ledger.payload_rows(session, event.event.id, delegate_id)
    sends = plan(event, people, view, now)
    planned = [Planned(s.key, s.rule, s.channel, s.due_at, s.status) for s in sends]
    planned += [Planned(r.key, r.rule, r.channel, r.due_at, r.state, r.payload) for r in extra]
    return people[0], sorted(planned, key=lambda p: (p.due_at, p.rule, p.channel))


def _print_shown(item, event: Event) -> None:
    p = item.planned
    rule = next((r for r in event.rules if r.id == p.rule), None)
    what = f"{rule.label('en')} ({p.rule})" if rule else p.rule
    due = p.due_at.astimezone(event.tz)
    click.echo(f"\n=== {what} · {p.channel} · {due:%a %d %b %H:%M} · {p.state}")
    if item.problem:
        click.echo(f"cannot be rendered: {item.problem}")
        return
    if p.channel == "sms":
        click.echo(item.text)
        s = item.segments
        click.echo(f"[{s.segments} SMS part(s), {s.encoding}, {s.units} units]")
        return
    click.echo(f"Subject: {item.subject}\n")
    click.echo(item.text.rstrip())
    if item.ics is not None:
        click.echo("\n--- attached .ics ---")
        click.echo(item.ics.decode("utf-8").rstrip())


def _write_html(shown, path: Path) -> None:
    emails = [s for s in shown if s.planned.channel == "email" and s.html]
    for item in emails:
        target = path if len(emails) == 1 else path.with_name(f"{path.stem}-{item.planned.rule}{path.suffix}")
        target.write_text(item.html, encoding="utf-8")
        click.echo(f"HTML of {item.planned.rule}: {target}")
    if not emails:
        click.echo("no email to write as HTML", err=True)


# -- simulate -------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--from", "since", help="Start the virtual clock here (default: just before the first message)."
)
@click.option("--until", help="Stop the virtual clock here (default: after the last message).")
@click.option(
    "--delegates",
    "delegates_file",
    type=click.Path(path_type=Path, exists=True),
    help="Simulate for a delegate file instead of the stored delegates.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_rt
def simulate(
    rt: Runtime, since: str | None, until: str | None, delegates_file: Path | None, fmt: str
) -> None:
    """Run the whole plan on a virtual clock through the real workers, into its own outbox (never sends)."""
    from pipeline.sending import simulate as run_simulation
    from pipeline.store.people import load_delegates

    event = _event_or_fail(rt)
    if delegates_file is not None:
        people = read_delegate_file(delegates_file, event).delegates
    else:
        with rt.store.session() as session:
            people = load_delegates(session)
    if not people:
        fail(
            f"no delegates: import some first (kallelse delegates import {EXAMPLE_DELEGATES}) "
            "or pass --delegates FILE"
        )
    with click.progressbar(length=1, label="Simulating", file=sys.stderr, show_pos=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        report = run_simulation(
            rt.settings, people, parse_time(since, event), parse_time(until, event), progress
        )
    if fmt == "json":
        click.echo(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        _print_report(report, event, rt.settings)
    if report.totals.get(LedgerState.FAILED):
        sys.exit(1)


def _print_report(report, event: Event, settings: Settings) -> None:
    tz = event.tz
    click.echo(
        f"Simulated {report.start.astimezone(tz):%Y-%m-%d %H:%M} → {report.end.astimezone(tz):%Y-%m-%d %H:%M}"
        f" ({event.event.timezone})"
    )
    states = [S.SENT, S.FAILED, S.EXPIRED, S.SKIPPED, S.PLANNED]
    click.echo(f"{'rule':22} {'channel':7} " + " ".join(f"{s:>8}" for s in states))
    for (rule, channel), counts in sorted(report.by_rule.items()):
        click.echo(f"{rule:22} {channel:7} " + " ".join(f"{counts.get(s, 0):>8}" for s in states))
        for (r, c, state), reasons in sorted(report.reasons.items()):
            if (r, c) == (rule, channel):
                for reason, n in reasons.items():
                    click.echo(f"{'':30} {n} {state}: {reason}")
    click.echo("total: " + ", ".join(f"{report.totals.get(s, 0)} {s}" for s in states))
    click.echo(f"messages are in {report.outbox}/ (a simulation never sends: SMTP and Twilio are not used)")


# -- replies, surveys, exports -------------------------------------------------------------------


@main.command()
@pass_rt
def inbox(rt: Runtime) -> None:
    """Read RSVP replies from the reply-to mailbox over IMAP; leave other mail for a human."""
    from pipeline.inbox import ImapConfig, InboxError, check_inbox

    if not rt.settings.imap_host:
        fail("IMAP_HOST is not set: set IMAP_HOST, IMAP_USER and IMAP_PASSWORD for the reply-to mailbox")
    try:
        summary = check_inbox(
            ImapConfig.from_settings(rt.settings), rt.store, _event_or_fail(rt), datetime.now(UTC)
        )
    except InboxError as e:
        fail(str(e))
    click.echo(
        f"{summary.seen} new mails: {summary.rsvps} answers recorded, "
        f"{summary.ignored_automatic} automatic replies ignored, "
        f"{summary.left_for_human} left (flagged) for a human, {summary.duplicates} seen before"
    )


@main.group()
def survey() -> None:
    """Survey results."""


@survey.command("report")
@click.option("--png", type=click.Path(path_type=Path, dir_okay=False), help="Also write a chart here.")
@click.option("--lang", type=click.Choice(["sv", "en"]), default="sv")
@pass_rt
def survey_report_command(rt: Runtime, png: Path | None, lang: str) -> None:
    """Print the survey results per question (and write a PNG chart)."""
    from pipeline.reports import format_report, survey_report, write_chart

    event = _event_or_fail(rt)
    with rt.store.session() as session:
        report = survey_report(session, event)
    click.echo(format_report(report, lang))
    if png is not None:
        click.echo(f"chart: {write_chart(report, png, lang)}")


@main.command()
@click.argument("what", type=click.Choice(["rsvps", "survey", "messages"]))
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option(
    "--output",
    "-o",
    "output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file instead of standard output.",
)
@pass_rt
def export(rt: Runtime, what: str, fmt: str, output: Path | None) -> None:
    """Export RSVPs, survey answers or the message ledger (CSV for Excel, or JSON) to standard output
    or a file."""
    from pipeline.export import export_rows, write_csv, write_json

    event = _event_or_fail(rt)
    with rt.store.session() as session:
        columns, rows = export_rows(session, event, what)  # type: ignore[arg-type]  # click.Choice checked it
    write = write_csv if fmt == "csv" else write_json
    if output is not None:
        try:
            with output.open("w", encoding="utf-8", newline="") as f:
                write(columns, rows, f)
        except OSError as e:
            fail(f"{output}: cannot write: {e.strerror or e}")
        click.echo(f"{output}: {len(rows)} rows", err=True)
        return
    # Bytes straight to stdout: Excel needs the BOM and the file's own line endings untouched.
    stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
    write(columns, rows, stream)
    stream.flush()
    stream.detach()


# -- processes ------------------------------------------------------------------------------------


def refuse_unsafe_start(settings: Settings) -> None:
    """Exit 1 with one line before a long-running process starts on an unsafe SECRET_KEY."""
    from pipeline.safety import refusal

    problem = refusal(settings)
    if problem:
        fail(problem)


@main.command()
@pass_rt
def scheduler(rt: Runtime) -> None:
    """Run the scheduler: plan, write the ledger, enqueue what is due (needs BROKER_URL)."""
    from pipeline.sending import run_scheduler

    refuse_unsafe_start(rt.settings)
    run_scheduler(rt)


@main.command()
@click.option("--processes", type=int, help="Worker processes (default: WORKER_PROCESSES).")
@click.option("--threads", type=int, help="Threads per process (default: WORKER_THREADS).")
@pass_rt
def worker(rt: Runtime, processes: int | None, threads: int | None) -> None:
    """Run delivery workers (needs BROKER_URL)."""
    from pipeline.sending import run_workers

    refuse_unsafe_start(rt.settings)
    run_workers(rt.settings, processes or rt.settings.worker_processes, threads or rt.settings.worker_threads)


@main.command()
@click.option("--host", help="Address to listen on (default: WEB_HOST, 127.0.0.1).")
@pass_rt
def web(rt: Runtime, host: str | None) -> None:
    """Serve the web app: Twilio webhooks, RSVP and survey pages, the organiser dashboard."""
    from pipeline.web.server import serve

    refuse_unsafe_start(rt.settings)
    serve(rt, host=host)


@main.command()
@click.option("--no-web", is_flag=True, help="Do not serve the web app.")
@pass_rt
def run(rt: Runtime, no_web: bool) -> None:
    """Scheduler, workers and web app in one process: for small events and laptops."""
    from pipeline.sending import run_all

    refuse_unsafe_start(rt.settings)
    run_all(rt, None if no_web else _web_server(rt))


def _web_server(rt: Runtime):
    try:
        from pipeline.web.server import WebServer
    except ImportError:  # the web app is optional for a laptop run
        return None
    return WebServer(rt)


# -- organisers: broadcast, apply, status -------------------------------------------------------


@main.command()
@click.option(
    "--to",
    "to",
    multiple=True,
    required=True,
    help="Segment: all, attending, not-responded, declined, role:R, stop:S, language:L, delegate:ID. "
    "Comma = AND inside one --to (attending,stop:hotel); repeat --to for OR.",
)
@click.option("--text", help="Free text, sent with the `broadcast` template.")
@click.option("--template", help="Send a named template instead of free text.")
@click.option("--subject", help="Email subject for --text (default: the template's).")
@click.option(
    "--channel",
    type=click.Choice(["auto", "sms", "email", "both"]),
    default="auto",
    show_default=True,
    help="auto: SMS to those with a phone, email to the others.",
)
@click.option("--dry-run", is_flag=True, help="Show who would get what; store nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--again", is_flag=True, help="Send again what was already sent (a new broadcast id).")
@pass_rt
def broadcast(
    rt: Runtime,
    to: tuple[str, ...],
    text: str | None,
    template: str | None,
    subject: str | None,
    channel: str,
    dry_run: bool,
    yes: bool,
    again: bool,
) -> None:
    """Send one message now to a segment of the delegates, through the ledger and the workers."""
    from pipeline.broadcast import BroadcastError, create_broadcast, make_request, preview_broadcast

    event = _event_or_fail(rt)
    env, store = rt.templates, rt.store
    try:
        request = make_request(to, event, text=text, template=template, subject=subject, channel=channel)
        with store.session() as session:
            preview = preview_broadcast(session, event, env, rt.settings, request)
    except BroadcastError as e:
        fail(str(e))
    _show_broadcast(preview, again, rt.settings.sms_rate_per_second)
    if preview.problems:
        fail(preview.problems)
    if dry_run:
        click.echo("--dry-run: nothing stored, nothing sent.")
        return
    if not yes:
        click.confirm("Send it?", abort=True)
    with store.session() as session:
        created = create_broadcast(session, event, env, rt.settings, request, datetime.now(UTC), again=again)
    click.echo(
        f"broadcast {created.id}: new: {created.new_rows}, already sent/queued: {created.existing_rows}"
    )
    _send_batch(rt, event, created.rule)


def _show_broadcast(preview, again: bool, rate: float) -> None:
    from pipeline.broadcast import audience_text

    per = preview.per_channel
    click.echo(f"To: {audience_text(preview.request.audience)} (broadcast {preview.broadcast_id})")
    click.echo(
        f"Recipients: {len(preview.recipients)} messages: "
        f"{per.get('sms', 0)} SMS, {per.get('email', 0)} email"
    )
    for reason, n in sorted(preview.skipped.items()):
        click.echo(f"Skipped: {n} ({reason})")
    for sample in preview.samples:
        click.echo(f"\n--- {sample.channel}, {sample.language} (as {sample.delegate_id} sees it) ---")
        if sample.subject:
            click.echo(f"Subject: {sample.subject}\n")
        click.echo(sample.body.rstrip())
        if sample.segments:
            s = sample.segments
            click.echo(f"[{s.segments} SMS part(s), {s.encoding}, {s.units} units]")
    click.echo("")
    if per.get("sms"):
        click.echo(
            f"SMS: up to {preview.sms_segments} part(s) each ({preview.sms_encoding}); sending takes about "
            f"{preview.send_seconds:.1f} s at {rate:g} SMS parts per second (SMS_RATE_PER_SECOND)"
        )
    for warning in preview.warnings:
        click.echo(f"Warning: {warning}")
    if preview.existing and not again:
        click.echo(
            f"Already stored for {preview.existing} messages: only new recipients get it (--again resends)."
        )


def _send_batch(rt: Runtime, event: Event, rule: str) -> None:
    """Deliver a batch of ledger rows now (no BROKER_URL) or hand it to the workers."""
    from pipeline.sending import send_batch

    if rt.settings.broker_url:
        result = send_batch(rt, event.event.id, rule)
        click.echo(f"enqueued {result.enqueued} messages for the workers; follow with `kallelse status`")
        return
    with click.progressbar(length=1, label="Sending", file=sys.stderr, show_pos=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        states = send_batch(rt, event.event.id, rule, progress).states
    click.echo("done: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items())))
    if states.get(LedgerState.FAILED):
        sys.exit(1)


@main.command("apply")
@click.option("--dry-run", is_flag=True, help="Show what would change and who would be told; store nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_rt
def apply_command(rt: Runtime, dry_run: bool, yes: bool) -> None:
    """Apply an edited event file: re-plan, and tell those already told the old time or place."""
    from pipeline.changes import apply_changes, preview_apply
    from pipeline.timetable import parse_event

    path = rt.settings.event_file
    try:
        text = path.read_text(encoding="utf-8")
        event = parse_event(text, str(path))
    except (OSError, ConfigError) as e:
        fail(e.problems if isinstance(e, ConfigError) else f"{path}: {e}")
    changed_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    store = rt.store
    with store.session() as session:
        preview = preview_apply(session, event, text, datetime.now(UTC), changed_at)
    if preview.unchanged:
        click.echo(f"{path}: unchanged since it was applied (sequence {preview.sequence}); nothing to do.")
        return
    _show_apply(preview, event, store)
    if dry_run:
        click.echo("--dry-run: nothing stored, nothing sent.")
        return
    if not yes and not preview.first:
        click.confirm("Apply and send the change notices?", abort=True)
    with store.session() as session:
        _, applied = apply_changes(session, event, text, datetime.now(UTC), changed_at)
    click.echo(
        f"applied as sequence {applied.sequence}: {applied.plan.moved} sends moved, "
        f"{applied.plan.added} added, {applied.plan.cancelled} cancelled; {applied.notices} change notices"
    )
    if applied.rule:
        _send_batch(rt, event, applied.rule)


def _show_apply(preview, event: Event, store) -> None:
    from pipeline.changes import describe
    from pipeline.store.people import load_delegates

    if preview.first:
        click.echo("First apply: this file becomes the baseline (sequence 0); nobody is told anything.")
    for change in preview.changes:
        d = describe(event, change, "en")
        click.echo(f"Changed: {change.subject} {change.kind}: {d['old']} → {d['new']}")
    tz, diff = event.tz, preview.diff
    lines = [
        f"moved {m.key}: {m.old_due.astimezone(tz):%m-%d %H:%M} → {m.new_due.astimezone(tz):%m-%d %H:%M}"
        for m in diff.moved
    ]
    lines += [f"added {s.key}: {s.due_at.astimezone(tz):%m-%d %H:%M}" for s in diff.added]
    lines += [f"cancelled {key}: {why}" for key, why in diff.cancelled]
    click.echo(
        f"Plan: {len(diff.moved)} sends moved, {len(diff.added)} added, {len(diff.cancelled)} cancelled"
    )
    _echo_some(lines)
    with store.session() as session:
        names = {d.id: d.name for d in load_delegates(session, [n.delegate_id for n in preview.notices])}
    click.echo(f"Change notices: {len(preview.notices)} delegates were told the old time or place")
    _echo_some(
        f"tell {names.get(n.delegate_id, n.delegate_id)} ({'+'.join(n.channels)}): "
        + "; ".join(describe(event, c, "en")["what"] for c in n.changes)
        for n in preview.notices
    )


def _echo_some(lines, limit: int = 20) -> None:
    lines = list(lines)
    for line in lines[:limit]:
        click.echo(f"  {line}")
    if len(lines) > limit:
        click.echo(f"  … and {len(lines) - limit} more")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_rt
def status(rt: Runtime, fmt: str) -> None:
    """RSVPs, messages per rule and channel by state, failures, and the next sends."""
    from pipeline.status import event_status, format_status

    event = _event_or_fail(rt)
    with rt.store.session() as session:
        result = event_status(session, event)
    if rt.event_file.problem:
        click.echo(f"Event file does not load, the last good version is in force: {rt.event_file.problem}")
    if fmt == "json":
        click.echo(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
        return
    for line in format_status(result, event):
        click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    main()
