"""PostgreSQL diagnostics: one module per runbook topic, killing apart from looking."""

from . import connections, kill, queries
from .session import connect

__all__ = ["connect", "connections", "kill", "queries"]
