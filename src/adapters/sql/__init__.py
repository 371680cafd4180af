"""SQL adapter (SQLAlchemy 2 Core): one code path for SQLite and MySQL/MariaDB."""

from stockade.adapters.sql.engine import make_engine, make_read_engine
from stockade.adapters.sql.migrate import migrate

__all__ = ["make_engine", "make_read_engine", "migrate"]
