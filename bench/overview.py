"""Overview cards: the lists built in Python (first landing) vs counted in SQL (day_counts), 30,000
delegates. Figures in bench/README.md."""

import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline.delegates import Delegate
from pipeline.planner import plan
from pipeline.store import open_store
from pipeline.store.ledger import ledger_view, sync_plan
from pipeline.store.people import load_delegates, upsert_delegates
from pipeline.timetable import load_event
from pipeline.web import admin_data

N = 30_000
db = Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench-overview.sqlite3")
db.parent.mkdir(parents=True, exist_ok=True)
for p in db.parent.glob(db.name + "*"):
    p.unlink()
store = open_store(f"sqlite:///{db}")
event = load_event(Path("config/event.toml"))
rnd = random.Random(1)
people = [
    Delegate(
        id=f"p{i:05d}",
        name=f"Person {i}",
        phone=f"+4670{i:07d}",
        stop=rnd.choice(["hotel", "airport", None]),
        dinner=rnd.choice([True, False, None]),
        rsvp=rnd.choice(["yes", "no", "none"]),
    )
    for i in range(N)
]
now = datetime(2021, 10, 1, tzinfo=UTC)
t = time.perf_counter()
with store.session() as s:
    upsert_delegates(s, people, now)
with store.session() as s:
    ds = load_delegates(s)
    sync_plan(s, event.event.id, plan(event, ds, ledger_view(s, event.event.id), now), now)
print(f"setup {time.perf_counter() - t:.1f} s")


def old():
    with store.session() as s:
        [admin_data.stop_list(s, event, st.id) for st in event.stops]
        admin_data.dinner_list(s)


def new():
    with store.session() as s:
        admin_data.day_counts(s)


for name, fn in (("lists in Python", old), ("counts in SQL", new)):
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    each = ", ".join(f"{r * 1000:.0f}" for r in runs)
    print(f"{name}: median {statistics.median(runs) * 1000:.0f} ms (runs: {each})")
