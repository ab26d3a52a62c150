"""From a spec to the list of trials: expand the grid, resolve datasets, key every trial.

Every dataset is opened and validated here, before any trial starts, and every trial config
is built and validated, so a bad value fails in seconds with its key path.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

from pydantic import TypeAdapter, ValidationError

from runners.spec import SpecError, SweepSpec, _loc, task_config_class
from sobolev.data import BUILTIN_CLIPS, BUILTIN_IMAGES, load_audio, load_image, resolve_images
from sobolev.errors import ConfigError
from sobolev.rendering.llff import load_llff
from sobolev.rendering.scenes import BUILTIN_SCENES, resolve_scene
from sobolev.sampling import Sampling
from sobolev.trainers.image import check_image_fits_factor


@dataclass
class PlannedTrial:
    """One trial of a sweep: its grid coordinates, full resolved config and stable key."""

    key: str
    """``trial_key``: hash of the task, the full resolved config and the data's content."""
    name: str
    """Readable: ``astronaut/sine/val_der/f4/s0``."""
    task: str
    axes: Dict[str, Any]
    """Grid coordinates: dataset, activation, supervision, factor or ratio, seed, extra axes."""
    config: Dict[str, Any]
    """The task config as a dict (``dataclasses.asdict``)."""
    points: int = 0
    """Training points (for the cost estimate)."""
    samples: int = 0
    """All samples of the signal (evaluation cost)."""

    def build_config(self):
        return build_task_config(self.task, self.config)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PlannedTrial":
        return cls(**d)


@dataclass
class SweepPlan:
    spec: SweepSpec
    spec_path: str
    trials: List[PlannedTrial]
    dropped: int = 0
    """Combinations removed by include/exclude."""
    datasets: Dict[str, str] = field(default_factory=dict)
    """Display name → resolved source."""


def build_task_config(task: str, config: Dict[str, Any]):
    cls = task_config_class(task)
    if task == "nerf":
        from sobolev.trainers.nerf import apply_preset

        config = apply_preset(config)
    cfg = TypeAdapter(cls).validate_python(config)
    cfg.validate()
    return cfg


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def trial_key(task: str, config: Dict[str, Any], data_digest: str) -> str:
    """Stable hash of everything that determines a trial's result."""
    blob = json.dumps({"task": task, "config": config, "data": data_digest}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _resolve_datasets(spec: SweepSpec, spec_path: str) -> List[Tuple[str, str, str]]:
    """(display name, source, content digest) per dataset; folders expand; files become absolute."""
    out: List[Tuple[str, str, str]] = []
    builtins = {"image": BUILTIN_IMAGES, "audio": BUILTIN_CLIPS, "nerf": BUILTIN_SCENES}[spec.task]
    for i, entry in enumerate(spec.grid.datasets):
        where = f"{spec_path}: grid.datasets[{i}]"
        if spec.task == "nerf" and entry not in builtins:
            path = Path(entry).expanduser()
            if not (path / "poses_bounds.npy").is_file():
                raise SpecError(f"{where}: scene {entry!r} is not an LLFF folder (no poses_bounds.npy) or a built-in "
                                f"scene ({', '.join(BUILTIN_SCENES)})")
            out.append((path.resolve().name, str(path.resolve()), _file_digest(str(path / "poses_bounds.npy"))))
            continue
        if entry in builtins:
            out.append((entry, entry, f"builtin:{entry}"))
            continue
        if spec.task == "image":
            try:
                sources = resolve_images(entry)
            except ConfigError as exc:
                raise SpecError(f"{where}: {exc}") from None
        else:
            if not Path(entry).expanduser().is_file():
                raise SpecError(
                    f"{where}: audio {entry!r} not found: not a WAV file or a built-in clip "
                    f"({', '.join(BUILTIN_CLIPS.names())})"
                )
            sources = [entry]
        for src in sources:
            absolute = str(Path(src).expanduser().resolve())
            out.append((Path(src).stem, absolute, _file_digest(absolute)))
    names = [n for n, _, _ in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SpecError(f"{spec_path}: grid.datasets: two datasets are both called {dupes[0]!r}; rename one file")
    return out


def _matches(axes: Dict[str, Any], entry: Dict[str, Any]) -> bool:
    return all(axes.get(k) == v for k, v in entry.items())


def _set_path(d: Dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def _merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def _validate_data(spec: SweepSpec, spec_path: str, datasets, fixed: Dict[str, Any]) -> Dict[str, int]:
    """Open every dataset once; returns its sample count (pixels or samples)."""
    counts: Dict[str, int] = {}
    max_factor = 8 if spec.task == "image" else 64
    for i, f in enumerate(spec.grid.sampling.factors):
        try:
            Sampling(factor=f, max_factor=max_factor).validate()
        except ConfigError as exc:
            raise SpecError(f"{spec_path}: grid.sampling.factors[{i}]: {exc}") from None
    for i, (name, source, _) in enumerate(datasets):
        try:
            if spec.task == "image":
                signal = load_image(source, fixed.get("size"), bool(fixed.get("grayscale", False)))
                for f in spec.grid.sampling.factors:
                    check_image_fits_factor(signal, Sampling(factor=f))
                counts[name] = signal.shape[0] * signal.shape[1]
            elif spec.task == "audio":
                counts[name] = load_audio(source, fixed.get("duration")).num_samples
            else:
                from sobolev.trainers.nerf import apply_preset

                width = apply_preset(dict(fixed)).get("scene_width", 252)
                scene = load_llff(resolve_scene(source, width), int(fixed.get("downsample", 4)))
                counts[name] = scene.height * scene.width
        except ConfigError as exc:
            raise SpecError(f"{spec_path}: grid.datasets ({name}): {exc}") from None
    return counts


def plan_sweep(spec: SweepSpec, spec_path: str) -> SweepPlan:
    """Expand the grid into validated trials (datasets opened here)."""
    datasets = _resolve_datasets(spec, spec_path)
    fixed = spec.trial
    counts = _validate_data(spec, spec_path, datasets, fixed)
    g = spec.grid
    sampling = [("factor", f) for f in g.sampling.factors] + [("ratio", r) for r in g.sampling.ratios]
    extra_keys = list(g.extra)
    trials: List[PlannedTrial] = []
    dropped = 0
    data_key = {"image": "image", "audio": "audio", "nerf": "scene"}[spec.task]
    for (name, source, digest), act, sup, (skind, sval), seed, *extra in itertools.product(
        datasets, g.activations, g.supervision, sampling, g.seeds, *[g.extra[k] for k in extra_keys]
    ):
        axes = {"dataset": name, "activation": act, "supervision": sup, skind: sval, "seed": seed}
        axes.update(dict(zip(extra_keys, extra)))
        if spec.include and not any(_matches(axes, e) for e in spec.include):
            dropped += 1
            continue
        if any(_matches(axes, e) for e in spec.exclude):
            dropped += 1
            continue
        cfg_dict = _merge(fixed, {data_key: source, "supervision": sup, "seed": seed, "model": {"activation": act}})
        if skind == "factor":
            cfg_dict.update(factor=sval, ratio=None)
        else:
            cfg_dict["ratio"] = sval
        for k, v in zip(extra_keys, extra):
            _set_path(cfg_dict, k, v)
        try:
            cfg = build_task_config(spec.task, cfg_dict)
        except ValidationError as exc:
            err = exc.errors()[0]
            path = _loc(list(err["loc"]))
            section = "grid.extra" if path.split(".")[0] in extra_keys or path in extra_keys else "trial"
            raise SpecError(f"{spec_path}: {section}.{path}: {err['msg']} (got {err.get('input')!r})") from None
        except ConfigError as exc:
            raise SpecError(f"{spec_path}: trial ({name}/{act}/{sup}/{skind}={sval}): {exc}") from None
        resolved = asdict(cfg)
        total = counts[name]
        points = _points(cfg.sampling, spec.task, total, resolved)
        label = "/".join(
            [name, act, sup, f"f{sval}" if skind == "factor" else f"r{sval:g}", f"s{seed}"]
            + [f"{k}={v}" for k, v in zip(extra_keys, extra)]
        )
        trials.append(
            PlannedTrial(
                key=trial_key(spec.task, resolved, digest),
                name=label,
                task=spec.task,
                axes=axes,
                config=resolved,
                points=points,
                samples=total,
            )
        )
    if not trials:
        raise SpecError(f"{spec_path}: include/exclude leave no trial to run")
    keys = [t.key for t in trials]
    if len(set(keys)) != len(keys):
        raise SpecError(f"{spec_path}: two grid points give the same trial (a repeated value on an axis?)")
    return SweepPlan(spec, spec_path, trials, dropped, {n: s for n, s, _ in datasets})


def pack_trials(trials: List[PlannedTrial], size: int) -> List[List[PlannedTrial]]:
    """Trials in packs of at most ``size`` that share a batched network: same task, model, point
    count, steps, derivative path, device and channels, and all (or none) trained on derivatives.

    The trainable checks the exact shapes again (``sobolev.trainers.packed.split_into_packs``).
    """
    from sobolev.losses import SUPERVISIONS

    groups: Dict[str, List[PlannedTrial]] = {}
    for t in trials:
        c = t.config
        key = json.dumps({
            "task": t.task, "model": c["model"], "points": t.points, "samples": t.samples, "steps": c["steps"],
            "derivatives": SUPERVISIONS.get(c["supervision"]).uses_derivatives, "impl": c.get("derivative_impl"),
            "device": c.get("device"), "grayscale": c.get("grayscale"), "factor": c.get("factor"),
            "ratio": c.get("ratio"),
        }, sort_keys=True, default=str)
        groups.setdefault(key, []).append(t)
    return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]


def _points(sampling, task: str, total: int, config: Dict[str, Any]) -> int:
    if task == "nerf":
        return int(config["rays"] * config["samples"])
    if sampling.ratio is not None:
        return max(1, int(round(sampling.ratio * total)))
    if task == "image":
        side = int(round(math.sqrt(total)))  # built-ins and --size are square; files: close enough
        return math.ceil(side / sampling.factor) ** 2
    return math.ceil(total / sampling.factor)


# -- cost estimate ---------------------------------------------------------------------------

_CALIBRATION: Dict[Tuple[str, int], float] = {}


def calibrate(supervision: str, hidden: int = 256, layers: int = 3, in_features: int = 2, out_features: int = 3) -> float:
    """Seconds per training point per step on this machine, measured on a short real run."""
    import torch

    from sobolev.jacobian import value_and_input_jacobian
    from sobolev.losses import SUPERVISIONS
    from sobolev.models import CoordinateMLP

    key = (supervision, hidden)
    if key in _CALIBRATION:
        return _CALIBRATION[key]
    torch.manual_seed(0)
    model = CoordinateMLP(in_features, out_features, hidden_features=hidden, hidden_layers=layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(256, in_features)  # small: the estimate is rough, and calibrating delays the sweep
    der = SUPERVISIONS.get(supervision).uses_derivatives

    def step() -> None:
        opt.zero_grad()
        if der:
            v, j = value_and_input_jacobian(model, x)
            loss = v.square().mean() + j.square().mean()
        else:
            loss = model(x).square().mean()
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(3):
        step()
    _CALIBRATION[key] = (time.perf_counter() - t0) / 3 / len(x)
    return _CALIBRATION[key]


def estimate_seconds(trial: PlannedTrial) -> float:
    """Training time of one trial at full speed on this machine (a rough linear model)."""
    cfg = trial.config
    per_point = calibrate(cfg["supervision"], cfg["model"]["hidden_features"])
    scale = (cfg["model"]["hidden_layers"] + 1) / 4
    train = per_point * scale * max(trial.points, 64) * cfg["steps"]
    evals = per_point * scale * trial.samples * 3  # final prediction + Jacobian
    return train + evals
