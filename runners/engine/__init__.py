"""The driver of a sweep: the one process that plans, starts or joins Ray, runs Tune and settles MLflow.

``sweep`` composes an invocation's phases (``invocation``: open; ``search_phase``; ``trial_phase``; close);
``cluster`` and ``local_ray`` give it a Ray, ``tune_events`` and ``progress`` feed the caller's view, ``state``
is the resume state.  It reports to its caller through a :class:`~runners.engine.progress.View`, never
printing itself.
"""
