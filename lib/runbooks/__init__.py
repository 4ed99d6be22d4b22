"""Executable incident runbooks for Autolytiq Desk Studio.

A notebook needs one import line, e.g. `from runbooks import charts, postgres, record`.
This module stays light: the `runbook` command imports it before any kernel starts.
"""

from . import display
from .evidence import Action, Finding, record

display.install()  # in a Jupyter kernel: tables in units a person reads (runbooks.display); elsewhere nothing

__version__ = "0.1.0"
__all__ = ["Action", "Finding", "__version__", "record"]
