"""Runners: from a YAML spec to trials on Ray Tune with their results in MLflow.

The sub-packages are rooms by *where their code runs*:

================  =====================================================================================
``runners.cli``     the ``sobolev-sweep`` command line: click commands, terminal views, one local trial
``runners.engine``  the driver: an invocation's phases (open, search, trials, close), the local Ray and its
                    keeper, Tune's events, the resume state.  Runs in the one process that drives a sweep.
``runners.worker``  what runs inside a Ray Tune trial, on whichever node Ray places it: the trainables of a
                    sweep trial and of a search configuration, their checkpoints, the contract the driver
                    hands them.  Everything it needs arrives as arguments (``runners.worker.contract``).
``runners.plan``    trials, keys, a search's arms, packs and the cost estimate: pure computation on a spec.
``runners.spec``    YAML (safe) → the typed spec, the ``search`` block's schema.
``runners.store``   the MLflow layout (tag and param names, without MLflow imports), the typed records a
                    sweep stores, the tracking URI and the tracker.  What only *reads* a store uses this.
================  =====================================================================================

The import rule (checked by ``tests/test_architecture.py``): imports run one way,

    cli → engine → worker → plan → spec

a room may import the rooms to its right, never one to its left; anything may import ``store``, and
``store`` imports no other room.  The command line (the top) also calls ``analysis`` for ``report``;
``analysis`` (which only reads a store) imports only ``plan`` (and ``spec`` beneath it) and ``store``.
``ray`` and ``mlflow`` are imported inside the functions that use them (only Tune's callbacks import ``ray`` at
import time), so ``plan``, ``report`` and ``--help`` never pay for what they do not use.
"""
