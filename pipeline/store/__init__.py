"""Storage: SQLAlchemy models, migrations, and every write to the database.

The only writer: ledger rows are created and change state only here (`ledger.py`, `responses.py`,
`people.py`, `snapshots.py`); features call these functions. Reports and pages may read with their own
SELECTs.
"""

from pipeline.store.db import Store, open_store

__all__ = ["Store", "open_store"]
