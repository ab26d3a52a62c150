"""The spec: YAML from users (``safe_yaml``) validated into one typed :class:`~runners.spec.schema.SweepSpec`
(``schema``), the ``search`` block's schema (``search``), and reading a spec file (``load``).

Runs wherever a spec is read (the driver, ``report``); imports no other room but ``store``'s constants.
"""
