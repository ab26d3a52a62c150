"""The MLflow store of sweeps: its layout (``layout``: tag, param and artifact names, no MLflow import), the
typed records a sweep writes into it (``records``), the tracking URI (``uri``), a driver's identity
(``drivers``) and the tracker (``tracker``: every MLflow call).  Any room may use it; it uses none.
"""
