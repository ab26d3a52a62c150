"""Tune's trial events, fed to the driver's progress (``runners.engine.progress``) and its caller's view.

Kept apart from the progress because it imports Ray: the driver imports Ray only once it knows which
Ray it runs on (``runners.engine.local_ray`` must set up a loopback-only Ray before the first import).
"""

from __future__ import annotations

from typing import Dict, List

from ray.tune import Callback

from runners.engine.progress import EventSink, SearchProgress, SweepProgress
from runners.worker.contract import pack_keys


def _keys_of(trial) -> List[str]:
    return pack_keys(trial.config)


def _keys(result: Dict, field: str) -> List[str]:
    return [k for k in str(result.get(field, "") or "").split(",") if k]


class ProgressCallback(Callback):
    """Feeds the driver's :class:`SweepProgress` from Tune's trial events.

    A Tune trial is a pack of planned trials; the progress counts planned trials (by key).
    """

    @staticmethod
    def _set(trial, state: str, only_from: tuple = ("running",)) -> None:
        for key in _keys_of(trial):
            if EventSink.progress.state.get(key) in only_from:
                EventSink.progress.state[key] = state

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if isinstance(EventSink.progress, SweepProgress):
            name = result.get("best_trial") or EventSink.progress.names.get(_keys_of(trial)[0], "")
            EventSink.progress.observe(name, result)
            for key in _keys(result, "running_keys"):  # the pack of the chain being trained
                if EventSink.progress.state.get(key) in (None, "running", "failed"):
                    EventSink.progress.state[key] = "running"
            for key in _keys(result, "finished_keys"):
                EventSink.progress.state[key] = "done"
            for key in _keys(result, "failed_keys"):
                EventSink.progress.state[key] = "failed"
            EventSink.changed()

    def on_trial_complete(self, iteration, trials, trial, **info):
        if isinstance(EventSink.progress, SweepProgress):
            self._set(trial, "done")
            EventSink.changed(event=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        if isinstance(EventSink.progress, SweepProgress):
            EventSink.progress.retries += 1
            EventSink.changed()

    def on_trial_error(self, iteration, trials, trial, **info):
        if isinstance(EventSink.progress, SweepProgress):
            self._set(trial, "failed")
            EventSink.changed(event=True)



class SearchCallback(Callback):
    """Feeds the driver's :class:`SearchProgress` from Tune's events of one arm's search."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if isinstance(EventSink.progress, SearchProgress):
            EventSink.progress.observe(result.get("objective"))
            EventSink.changed()

    def on_trial_complete(self, iteration, trials, trial, **info):
        if isinstance(EventSink.progress, SearchProgress):
            progress = EventSink.progress
            reached = trial.last_result.get("step", 0)
            progress.end("done" if reached >= progress.steps[progress.current] else "stopped")
            EventSink.changed(event=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        if isinstance(EventSink.progress, SearchProgress):
            EventSink.progress.end("failed")
            EventSink.changed(event=True)
