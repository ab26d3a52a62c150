"""``sobolev-sweep plan``: the preview of a sweep (``runners.engine.sweep.preview``) as tables."""

from __future__ import annotations

from rich.table import Table

from runners.cli.console import out
from runners.engine.invocation import SweepOptions
from runners.engine.sweep import PlanPreview, preview
from runners.plan.estimate import wall_seconds
from sobolev.trainers.config import COMPILE_AUTO_POINT_STEPS

SHOWN, FULL = 40, 60
"""A plan of more than ``FULL`` trials shows its first ``SHOWN``."""
STORED = {
    "finished": "[green]FINISHED[/]",
    "diverged": "[red]diverged[/] (--rerun trains it again)",
    "running": "[yellow]RUNNING[/] (another invocation)",
    "interrupted": "interrupted: continues",
    "": "",
}


def show_plan(spec_path: str, opts: SweepOptions) -> PlanPreview:
    view = preview(spec_path, opts)
    if view.arms:
        _search_table(view)
        if not view.tuned_known:
            out.print("evaluation: the trials below with each arm's tuned values (their keys are known after "
                      "tuning; the costs assume the untuned settings)", soft_wrap=True)
    table = Table(title=f"sweep {view.spec_name!r} ({view.task}) — {spec_path}")
    budgeted = any(t.step_flops for t in view.trials)  # a budget in FLOPs: each trial's steps come from it
    for col in ("#", "trial", "trial_key", "points", *(["MFLOP/step"] if budgeted else []), "steps", "compile",
                "est. s", "in MLflow"):
        table.add_column(col, justify="right" if col in ("#", "points", "MFLOP/step", "steps", "est. s") else "left")
    full = len(view.trials) <= FULL
    for i, t in enumerate(view.trials if full else view.trials[:SHOWN]):
        flops = [f"{t.step_flops / 1e6:.1f}" if t.step_flops else "—"] if budgeted else []
        table.add_row(str(i + 1), t.name, t.key, str(t.points), *flops, str(t.steps), "yes" if t.compiles else "no",
                      f"{t.seconds:.1f}", STORED.get(t.stored, f"{t.stored}: trains again"))
    out.print(table)
    if not full:
        out.print(f"… and {len(view.trials) - SHOWN} more trials")
    todo = view.to_run
    compiled = sum(1 for t in todo if t.compiles)
    if compiled:
        out.print(f"torch.compile: {compiled} of the {len(todo)} trials to run (`compile: auto` compiles trials of at "
                  f"least {COMPILE_AUTO_POINT_STEPS:,} steps × points, where it repays its first step; the "
                  f"autograd derivative path stays eager)", soft_wrap=True)
    if view.chains:
        out.print(f"chained: {view.chained} short trials as {view.chains} Tune trials, each training its trials one "
                  "after the other (run.chain_seconds; every trial keeps its own run, key and checkpoints)",
                  soft_wrap=True)
    if view.pack > 1:
        out.print(f"packed (run.pack={view.pack}): {len(todo)} trials as {view.packs} batched Tune trials of sizes "
                  f"{', '.join(map(str, view.pack_sizes))}", soft_wrap=True)
    conc, total = view.concurrent, view.train_seconds
    wall = wall_seconds(total, len(todo), conc, view.overhead)
    outside = wall - total / conc
    source = "as this sweep's earlier runs measured" if view.overhead_measured else "a first guess"
    out.print(
        f"{len(view.trials)} trials ({view.dropped} dropped by include/exclude), "
        f"{len(view.trials) - len(todo)} already FINISHED, diverged or running in {view.uri}, {len(todo)} to run.\n"
        f"Estimated cost on this machine: {total / 60:.1f} trial-minutes of training, "
        f"about {wall / 60:.1f} min wall time with {conc} concurrent trial(s), "
        f"{outside / 60:.1f} of them outside training ({view.overhead:.2f} s a trial per slot, {source}).",
        soft_wrap=True,
    )
    if view.search_seconds:
        in_all = wall_seconds(view.search_seconds + total, len(todo), conc, view.overhead)
        out.print(f"With the search: about {in_all / 60:.1f} min wall time in all.")
    return view


def _search_table(view: PlanPreview) -> None:
    """Phase 1 of a tuned comparison: per arm, the searched fields, the budget and the cost."""
    spec_search = view.search
    asha = spec_search.scheduler.asha if spec_search.scheduler is not None else None
    scheduler = f"ASHA (grace {asha.grace_steps} steps, ×1/{asha.reduction_factor:g} per rung)" if asha else "none"
    budget = (f"{spec_search.budget_flops:.3g} training FLOPs" if spec_search.budget_flops is not None
              else f"{spec_search.samples} configurations")
    table = Table(title=f"search ({spec_search.algorithm}, scheduler {scheduler}): every arm gets "
                        f"{budget}, each configuration trained on {', '.join(spec_search.datasets)} × "
                        f"seeds {', '.join(map(str, spec_search.seeds))} as one batched network; objective: mean "
                        f"held-out {spec_search.metric}")
    for col in ("arm", "searched", "not searched (do not apply)", "members", "steps (budget)", "est. s", "in MLflow"):
        table.add_column(col)
    for line in view.arms:
        searched = ", ".join(f"{k} {d.kind}{d.candidates() if d.kind != 'choice' else d.choice}"
                             for k, d in line.arm.space.items())
        table.add_row(line.arm.label, searched, ", ".join(line.skipped) or "—", str(len(line.arm.members)),
                      f"{line.budget_steps:.0f}", f"{line.seconds:.1f}", "[green]searched[/]" if line.searched else "")
    out.print(table)
