"""Executable incident runbooks for Autolytiq Desk Studio.

A notebook needs one import line, e.g. `from runbooks import charts, postgres, record`.
This module stays light: the `runbook` command imports it before any kernel starts.
"""

import sys

# jsonschema (under nbformat) imports rfc3987-syntax when installed (Jupyter's server side brings it), which builds
# a Lark grammar at import: ~1.8 s of every `runbook` command, for the "iri" string format no schema here uses.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

from . import display  # noqa: E402
from .evidence import Action, Finding, record  # noqa: E402

display.install()  # in a Jupyter kernel: tables in units a person reads (runbooks.display); elsewhere nothing

__version__ = "0.1.0"
__all__ = ["Action", "Finding", "__version__", "record"]
