"""PostgreSQL through one read-only, named, time-boxed session, with no knowledge of any runbook.

Looking: connections, queries (one named SQL statement per function); changing: kill.
"""

from . import connections, kill, queries
from .session import connect

__all__ = ["connect", "connections", "kill", "queries"]
