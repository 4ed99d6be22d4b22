"""One diagnosis per runbook, named like its notebook (`notebooks/pod-oomkilled.ipynb` ->
`diagnoses/pod_oomkilled.py`): what the runbook concludes from what the access layers read (findings, the
likely cause, the resolution it proposes). A diagnosis imports access layers (`kube`, `postgres`,
`prometheus`, `tls`, `health`, `gateway_log`) and never another diagnosis.
"""

import pandas as pd

# Tables shown in a notebook hold text from outside (application names, query text, pod names): MathJax must
# not typeset a `$...$` in them (pandas then marks each table `tex2jax_ignore`).
pd.set_option("display.html.use_mathjax", False)
