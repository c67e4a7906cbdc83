"""Faults on the day, with real processes: each test breaks one thing while `kallelse` runs and checks that
every message ends sent exactly once (or expired with a reason), that the processes are still running (or
were taken over), and reports how long recovery took (the `faults: recovery` section of the run).

Shortened where the behaviour is the same (see conftest.py): outages of 20 s instead of 60 s, backoffs of
0.5–4 s, REQUEUE_AFTER_SECONDS=10, SCHEDULER_LEASE_SECONDS=5.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from pipeline.links import LinkSigner
from pipeline.sending.scheduler import BATCH
from tests.faults.conftest import SECRET, Kallelse, delegates_csv, report, wait_for
from tests.twilio_server import Reply

pytestmark = [pytest.mark.faults, pytest.mark.redis]
TEXT = "Bussen från hotellet går kl. 09.15 i dag. Frågor: 070-174 06 05"


def phone_of(delegate_id: str) -> str:
    return f"+4670{1000000 + int(delegate_id[1:]):07d}"


def email_of(delegate_id: str) -> str:
    return f"{delegate_id}@example.se"


@dataclass
class Tally:
    rows: int
    sent: int
    expired: int
    duplicates: int
    lost: int
    in_doubt: int  # left `sending` by a killed worker: never resent blindly (unknown after 10 minutes)
    in_doubt_reached_provider: int = 0  # of those, how many the provider had taken before the kill

    def assert_clean(self) -> None:
        assert (self.duplicates, self.lost) == (0, 0), self


def tally(k: Kallelse, delivered_to: list[str], address_of) -> Tally:
    """Compare the ledger with what the provider received: every sent row arrived once, none lost."""
    rows = k.rows()
    received = collections.Counter(delivered_to)
    states = collections.Counter(row.state for row in rows)
    expected = collections.Counter(
        address_of(row.delegate_id) for row in rows if row.state in ("sent", "delivered")
    )
    doubt = collections.Counter(
        address_of(row.delegate_id) for row in rows if row.state in ("sending", "unknown")
    )
    # A row in doubt may or may not have reached the provider: one arrival for it is no duplicate.
    duplicates = sum(max(0, n - expected[a] - doubt[a]) for a, n in received.items())
    missing = sum(max(0, n - received[a]) for a, n in expected.items())
    unexplained = sum(1 for row in rows if row.state == "expired" and not row.reason)
    not_done = sum(states[s] for s in ("planned", "queued", "failed", "skipped"))
    return Tally(
        rows=len(rows),
        sent=sum(expected.values()),
        expired=states["expired"],
        duplicates=duplicates,
        lost=missing + unexplained + not_done,
        in_doubt=sum(doubt.values()),
        in_doubt_reached_provider=sum(1 for a in doubt if received[a] > expected[a]),
    )


def sms_tally(k: Kallelse, twilio) -> Tally:
    return tally(k, [m.to for m in twilio.messages], phone_of)


def email_tally(k: Kallelse, smtp) -> Tally:
    return tally(k, [to for m in smtp.messages for to in m.rcpt_tos], email_of)


def setup(k: Kallelse, n: int, *, phones: bool = True, emails: bool = False) -> None:
    result = k.cli(
        "delegates", "import", str(delegates_csv(k.tmp / "delegates.csv", n, phones=phones, emails=emails))
    )
    assert result.returncode == 0, result.stderr


def broadcast(k: Kallelse, channel: str = "sms", text: str = TEXT):
    return k.cli("broadcast", "--to", "all", "--text", text, "--channel", channel, "--yes")


def start_scheduler_and_workers(k: Kallelse, workers: int = 1) -> None:
    k.start("scheduler", "scheduler")
    for i in range(workers):
        k.start(f"worker{i}", "worker", "--processes", "1")
    wait_for(lambda: "is active" in k.log("scheduler"), 60, "the scheduler to take the lease")


def test_a_worker_killed_mid_broadcast_of_2000_loses_and_duplicates_nothing(
    kallelse, redis_process, twilio_server
):
    """kill -9 one of two workers after ~500 of 2,000 SMS: the other worker gets its messages back."""
    k = kallelse
    k.env["BROKER_URL"] = redis_process.url
    setup(k, 2000)
    start_scheduler_and_workers(k, workers=2)
    assert broadcast(k).returncode == 0
    wait_for(lambda: len(twilio_server.messages) >= 500, 120, "500 SMS")
    k.kill("worker0")
    killed, killed_at = time.monotonic(), datetime.now(UTC)
    wait_for(lambda: k.settled(stuck_before=killed_at), 180, "the broadcast to settle", every=0.5)
    recovery = time.monotonic() - killed
    result = sms_tally(k, twilio_server)
    result.assert_clean()
    # At most the killed worker's claimed batches (8 threads × BATCH ids) are left in doubt: `sending`,
    # settled later from Twilio's list (sent with their sid, or sent if Twilio never got them). A row can
    # also be `unknown` when the Twilio-like server, loaded, hung up on a request: the same settling.
    assert result.in_doubt <= 8 * BATCH
    assert result.sent + result.in_doubt == 2000
    assert k.running("worker1") and k.running("scheduler")
    report(
        "worker kill -9 mid-broadcast (2,000 SMS)",
        sent=result.sent,
        in_doubt=result.in_doubt,
        of_which_reached_twilio=result.in_doubt_reached_provider,
        duplicates=0,
        lost=0,
        recovery=recovery,
    )


def test_redis_flushed_mid_broadcast_loses_nothing(kallelse, redis_process, twilio_server):
    """FLUSHALL while 400 SMS are queued: the scheduler re-enqueues what the broker lost."""
    k = kallelse
    k.env["BROKER_URL"] = redis_process.url
    twilio_server.script(None, [Reply(201, delay=0.05)] * 400)  # a broadcast that takes a few seconds
    setup(k, 400)
    start_scheduler_and_workers(k)
    assert broadcast(k).returncode == 0
    wait_for(lambda: len(twilio_server.messages) >= 50, 60, "50 SMS")
    redis_process.flush()
    flushed = time.monotonic()
    wait_for(lambda: k.settled(), 120, "the broadcast to settle", every=0.5)
    recovery = time.monotonic() - flushed
    result = sms_tally(k, twilio_server)
    result.assert_clean()
    assert result.sent == 400
    assert k.running("worker0") and k.running("scheduler")
    report("Redis flushed mid-broadcast (400 SMS)", sent=result.sent, duplicates=0, lost=0, recovery=recovery)


def test_redis_killed_and_restarted_empty_keeps_every_process_up(kallelse, redis_process, twilio_server):
    """Redis dies mid-broadcast and comes back empty 5 s later: the scheduler logs it once and goes on, a
    broadcast meanwhile says so in one line, /healthz is 503 while Redis is down, and all goes out once."""
    k = kallelse
    k.env["BROKER_URL"] = redis_process.url
    twilio_server.script(None, [Reply(201, delay=0.05)] * 300)
    setup(k, 300)
    start_scheduler_and_workers(k)
    k.start("web", "web")
    k.wait_for_web()
    wait_for(lambda: k.healthz().status_code == 200, 30, "/healthz to be 200")
    assert broadcast(k).returncode == 0
    wait_for(lambda: len(twilio_server.messages) >= 50, 60, "50 SMS")
    redis_process.kill()
    down = k.healthz()
    assert down.status_code == 503 and down.json()["broker"].startswith("broker: Redis unreachable")
    second = broadcast(k, text="Middagen börjar kl. 19.00 i stället för 18.00.")
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1].startswith("kallelse: broker: Redis unreachable")
    assert "Traceback" not in second.stderr
    time.sleep(5)
    redis_process.start()
    back = time.monotonic()
    wait_for(lambda: k.settled(), 120, "both broadcasts to settle", every=0.5)
    recovery = time.monotonic() - back
    wait_for(lambda: k.healthz().status_code == 200, 30, "/healthz to be 200 again")
    result = sms_tally(k, twilio_server)
    result.assert_clean()
    assert _each_text_once_per_number(twilio_server)
    assert result.sent == 600
    metrics = httpx.get(f"{k.web_url}/metrics", timeout=10).text
    assert 'kallelse_messages{channel="sms",state="sent"} 600.0' in metrics
    assert "kallelse_lateness_seconds_count 600.0" in metrics
    for name in ("kallelse_provider_errors", "kallelse_scheduler_tick_seconds"):
        assert f"# TYPE {name}" in metrics
    assert all(k.running(name) for name in ("scheduler", "worker0", "web"))
    assert k.log("scheduler").count("Redis unreachable") <= 2  # once per outage (+1 if it changed words)
    report(
        "Redis killed, restarted empty 5 s later (300 + 300 SMS)",
        sent=result.sent,
        duplicates=0,
        lost=0,
        recovery_after_redis_back=recovery,
    )


def _each_text_once_per_number(twilio) -> bool:
    """Two broadcasts go to the same people: each number gets each text once."""
    per = collections.Counter((m.to, m.body) for m in twilio.messages)
    return max(per.values()) == 1


def test_twilio_429_then_503_is_waited_out_and_every_sms_goes_once(kallelse, redis_process, twilio_server):
    """Twilio answers 429 (Retry-After: 2) for 20 s, then 503 for 10 s: 268 SMS all go out afterwards."""
    k = kallelse
    k.env["BROKER_URL"] = redis_process.url
    setup(k, 268)
    start_scheduler_and_workers(k)
    twilio_server.outage([(429, 20.0), (503, 10.0)], retry_after=2)
    over = time.monotonic() + 30.0
    assert broadcast(k).returncode == 0
    wait_for(lambda: k.settled(), 180, "the broadcast to settle", every=0.5)
    recovery = time.monotonic() - over
    result = sms_tally(k, twilio_server)
    result.assert_clean()
    assert result.sent == 268
    refused = [t for t in twilio_server.request_times if t < over]
    assert len(refused) > 268  # every SMS was refused at least once, most several times
    assert k.running("worker0") and k.running("scheduler")
    report(
        "Twilio 429 for 20 s then 503 for 10 s (268 SMS)",
        sent=result.sent,
        failed=0,
        duplicates=0,
        recovery_after_twilio_back=recovery,
    )


def test_smtp_down_for_20_seconds_is_waited_out(kallelse, redis_process, smtp_server):
    """The SMTP server is gone for 20 s mid-broadcast of 284 emails: all go out once when it is back."""
    k = kallelse
    k.env["BROKER_URL"] = redis_process.url
    setup(k, 284, phones=False, emails=True)
    start_scheduler_and_workers(k)
    port = smtp_server.port
    smtp_server.stop()
    assert broadcast(k, channel="email").returncode == 0
    time.sleep(20)
    smtp_server.start(port)
    back = time.monotonic()
    wait_for(lambda: k.settled(), 180, "the broadcast to settle", every=0.5)
    recovery = time.monotonic() - back
    result = email_tally(k, smtp_server)
    result.assert_clean()
    assert result.sent == 284
    assert k.running("worker0") and k.running("scheduler")
    report(
        "SMTP down 20 s (284 emails)",
        sent=result.sent,
        failed=0,
        duplicates=0,
        recovery_after_smtp_back=recovery,
    )


def test_two_schedulers_on_postgresql_start_cleanly_and_the_standby_takes_over(
    kallelse, redis_process, twilio_server, postgres_server
):
    """Five times: two schedulers started together on a fresh PostgreSQL database; neither crashes, one is
    active. Then the active one is killed with -9 and the standby takes over within the lease."""
    import psycopg

    k = kallelse
    k.env.update(BROKER_URL=redis_process.url, DATABASE_URL=postgres_server)
    crashes = 0
    for start in range(5):
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        setup(k, 200)
        a, b = k.start(f"a{start}", "scheduler"), k.start(f"b{start}", "scheduler")
        wait_for(lambda s=start: "planned 200 delegates" in k.log(f"a{s}") + k.log(f"b{s}"), 60, "planning")
        time.sleep(1.5)
        logs = k.log(f"a{start}") + k.log(f"b{start}")
        crashes += (a.poll() is not None) + (b.poll() is not None) + ("Traceback" in logs)
        assert logs.count("is active") == 1, logs
        if start < 4:
            a.terminate(), b.terminate()
            a.wait(15), b.wait(15)
    assert crashes == 0
    active, standby = (
        (f"a{start}", f"b{start}") if "is active" in k.log(f"a{start}") else (f"b{start}", f"a{start}")
    )
    k.start("worker0", "worker", "--processes", "1")
    k.kill(active)
    killed = time.monotonic()
    takeover = wait_for(lambda: "is active" in k.log(standby), 30, "the standby to take over")
    assert broadcast(k).returncode == 0
    wait_for(lambda: k.settled(), 120, "the broadcast to settle", every=0.5)
    result = sms_tally(k, twilio_server)
    result.assert_clean()
    assert result.sent == 200 and k.running(standby)
    report(
        "two schedulers on PostgreSQL (5 starts)",
        crashes=crashes,
        takeover_after_kill_9=takeover,
        lease_seconds=k.env["SCHEDULER_LEASE_SECONDS"],
        broadcast_after_takeover=f"{result.sent} sent once",
        since_kill=time.monotonic() - killed,
    )


def test_an_event_file_broken_for_4_seconds_mid_broadcast_fails_nothing(
    kallelse, redis_process, twilio_server
):
    """The event file is saved half-way for 4 s during a 200-SMS broadcast: nothing fails, the scheduler
    stays up, the RSVP page answers, `kallelse status` says what is wrong."""
    k = kallelse
    k.env["BROKER_URL"] = redis_process.url
    twilio_server.script(None, [Reply(201, delay=0.15)] * 200)
    setup(k, 200)
    start_scheduler_and_workers(k)
    k.start("web", "web")
    k.wait_for_web()
    rsvp = LinkSigner(SECRET, k.env["PUBLIC_URL"]).links_for("d00001")["rsvp_url"]
    assert broadcast(k).returncode == 0
    wait_for(lambda: len(twilio_server.messages) >= 20, 60, "20 SMS")
    path = k.tmp / "event.toml"
    good = path.read_text(encoding="utf-8")
    path.write_text(good[: len(good) // 2], encoding="utf-8")
    broken = time.monotonic()
    pages, status = _while_broken(rsvp, k)
    path.write_text(good, encoding="utf-8")
    fixed = time.monotonic()
    wait_for(lambda: k.settled(), 120, "the broadcast to settle", every=0.5)
    result = sms_tally(k, twilio_server)
    result.assert_clean()
    assert result.sent == 200
    assert set(pages) == {200}
    assert status.returncode == 0 and "Event file does not load" in status.stdout
    assert k.running("scheduler") and k.running("worker0") and k.running("web")
    report(
        "event file broken 4 s mid-broadcast (200 SMS)",
        sent=result.sent,
        failed=0,
        duplicates=0,
        broken_for=fixed - broken,
        rsvp_page_answers=sorted(set(pages)),
        settled_after_fix=time.monotonic() - fixed,
    )


def _while_broken(rsvp: str, k: Kallelse) -> tuple[list[int], object]:
    pages: list[int] = []
    status_holder: list = []
    thread = threading.Thread(target=lambda: status_holder.append(k.cli("status")))
    thread.start()
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        pages.append(httpx.get(rsvp, timeout=10).status_code)
        time.sleep(0.25)
    thread.join(60)
    return pages, status_holder[0]


@pytest.mark.postgres
def test_bad_delegate_files_on_postgresql_store_their_good_rows(kallelse, postgres_url):
    """A NUL byte, an over-long cell and a row the CSV reader cannot read: each named FILE:LINE: column,
    and the 10 good rows are stored on PostgreSQL."""
    k = kallelse
    k.env["DATABASE_URL"] = postgres_url
    good = [f"g{i},Delegat {i},g{i}@example.se,,sv" for i in range(10)]
    bad = [
        "n1,Nul\x00Person,nul@example.se,,sv",
        f"l1,{'x' * 300},long@example.se,,sv",
        "q1,Quoted," + "x" * 140_000 + ",,sv",
    ]
    path = k.tmp / "bad.csv"
    path.write_text(
        "id,name,email,phone,language\n" + "\n".join(good[:4] + bad + good[4:]) + "\n", encoding="utf-8"
    )
    result = k.cli("delegates", "import", str(path))
    assert "Traceback" not in result.stderr
    assert f"{path}:6: name: contains a NUL character" in result.stderr
    assert f"{path}:7: name: too long (300 characters, at most 200)" in result.stderr
    assert f"{path}:8: row: cannot be read as CSV" in result.stderr
    assert "10 added" in result.stdout
    listed = k.cli("delegates", "list")
    assert listed.returncode == 0 and sum(f"g{i}@example.se" in listed.stdout for i in range(10)) == 10
    report("bad CSVs on PostgreSQL", good_rows_stored="10 of 10", reported=3, tracebacks=0)
