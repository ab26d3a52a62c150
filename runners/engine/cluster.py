"""The Ray the sweep runs on: a local one started for the sweep, or a cluster it joins.

A local Ray is kept by ``runners.engine.local_ray``: loopback only, token-authenticated, no dashboard,
and ended with the driver however the driver ends.  What the local machine cannot give (more CPUs
or GPUs per trial than it has, a CUDA device where it has no GPU) is refused at plan time, before
Ray starts (:func:`check_local_target`); on a cluster the same is checked against what the
cluster reports as soon as the driver has joined it (a trial asking for a GPU that does not exist
would stay PENDING forever).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Dict, List, Optional

from runners.plan.trials import PlannedTrial
from runners.spec.schema import SweepSpec
from sobolev.errors import ConfigError

OBJECT_STORE_BYTES = 256 * 1024 * 1024
"""The local Ray's object store: the typed trials and checkpoints of a sweep are small."""
_local_ray = None
"""The keeper of this driver's local Ray (``runners.engine.local_ray.LocalRay``), while one runs."""


def local_gpus() -> int:
    """GPUs this machine has (CUDA devices torch can see)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_target(spec: SweepSpec, trials: List[PlannedTrial], resources: Dict[str, float], where: str,
                 spec_path: str) -> None:
    """Refuse what ``resources`` (CPU, GPU counts of the target) cannot run: resource requests above them,
    trials on a CUDA device without a GPU for them."""
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if spec.resources.gpu > gpus:
        raise ConfigError(f"{spec.resources.gpu:g} GPU per trial requested, but {where} has {gpus:g} GPU "
                          f"(CPU {cpus:g}); set resources.gpu=0", path=("resources", "gpu"), source=spec_path)
    if spec.resources.cpu > cpus:
        raise ConfigError(f"{spec.resources.cpu:g} CPU per trial requested, {where} has {cpus:g}; allowed: "
                          f"0 < resources.cpu <= {cpus:g}", path=("resources", "cpu"), source=spec_path)
    cuda = sorted({t.config.device for t in trials if str(getattr(t.config, "device", "cpu")).startswith("cuda")})
    if cuda and gpus == 0:
        raise ConfigError(f"{cuda[0]!r}: {where} has no GPU; allowed here: cpu", path=("trial", "device"),
                          source=spec_path)
    if cuda and spec.resources.gpu == 0:
        raise ConfigError(f"{cuda[0]!r} needs a GPU per trial: set resources.gpu (e.g. 1, or 0.5 to share one); "
                          "Ray hides GPUs from trials that do not ask for one", path=("resources", "gpu"),
                          source=spec_path)


def check_local_target(spec: SweepSpec, trials: List[PlannedTrial], spec_path: str) -> None:
    """Plan time, before Ray starts: :func:`check_target` against this machine."""
    check_target(spec, trials, {"CPU": os.cpu_count() or 1, "GPU": local_gpus()}, "this machine", spec_path)


def trial_resources(spec: SweepSpec) -> Dict[str, float]:
    """What one Tune trial asks Ray for (``tune.with_resources``)."""
    return {"cpu": spec.resources.cpu, **({"gpu": spec.resources.gpu} if spec.resources.gpu else {})}


def check_address(address: str, timeout: float = 3.0) -> None:
    """An unreachable ``--address`` fails in seconds with the cause."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(f"--address {address}: cannot reach the Ray cluster: {exc.strerror or exc}") from None


def connect_ray(spec: SweepSpec, trials: List[PlannedTrial], address: Optional[str],
                spec_path: str) -> Dict[str, float]:
    """Start a local Ray (``address`` None) or join a cluster; refuse what the cluster cannot run."""
    global _local_ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    where = f"--address {address}" if address else "local Ray"
    if not address:
        from runners.engine.local_ray import start_local_ray

        try:
            _local_ray = start_local_ray(os.cpu_count() or 1, local_gpus(), OBJECT_STORE_BYTES)
        except RuntimeError as exc:
            raise ConfigError(str(exc), source=where) from None
    import ray
    from ray.exceptions import RayError

    for name in ("ray.tune", "ray.air", "ray.train"):  # a failed trial's traceback stays in its Tune folder
        logging.getLogger(name).setLevel(logging.CRITICAL)  # (error.txt); the summary and MLflow name its cause
    if address:
        check_address(address)
    try:
        ray.init(address=address or _local_ray.address, log_to_driver=False, logging_level="ERROR")
        resources = ray.cluster_resources()
    except (ConnectionError, RuntimeError, ValueError, RayError) as exc:  # RayError: e.g. a missing auth token
        shutdown_ray()
        raise ConfigError(f"{str(exc).strip().splitlines()[0]}", source=where) from None
    if address:
        try:
            check_target(spec, trials, resources, "the Ray cluster", spec_path)
        except ConfigError:
            shutdown_ray()
            raise
    return resources


def shutdown_ray() -> None:
    """Leave Ray; a local one is ended with all its processes."""
    global _local_ray
    import ray

    if ray.is_initialized():
        ray.shutdown()
    if _local_ray is not None:
        _local_ray.stop()
        _local_ray = None
