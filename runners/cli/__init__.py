"""The ``sobolev-sweep`` command line (``commands``) and what it shows: the plan (``plan_view``), the live view
(``live``), the summary (``summary``), ``train``'s options (``options``) and local trial (``train``), ``ui``'s
server (``ui``), terminal output (``console``).
"""
