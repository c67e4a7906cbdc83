"""Storage: SQLAlchemy models, the ledger operations and migrations. The only module that talks SQL."""

from pipeline.store.db import Store, open_store

__all__ = ["Store", "open_store"]
