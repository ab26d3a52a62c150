"""The Ray the sweep runs on: a local one started for the sweep, or a cluster it joins.

A local Ray has no dashboard and is watched by ``runners.reaper``, which removes its processes if
the driver dies.  Either way, a resource request the cluster cannot satisfy is refused before any
trial is queued (a trial asking for a GPU that does not exist would stay PENDING forever).
"""

from __future__ import annotations

import os
import socket
from typing import Dict, Optional

from runners.spec import SweepSpec
from sobolev.errors import ConfigError


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


def connect_ray(spec: SweepSpec, address: Optional[str], spec_path: str) -> Dict[str, float]:
    """Start a local Ray (``address`` None) or join a cluster; refuse resources the cluster does not have."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    import ray

    if address:
        check_address(address)
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"--address {address}: {str(exc).splitlines()[0]}") from None
    else:
        from runners.reaper import start_reaper

        start_reaper()  # exits by itself once this driver is gone, removing what Ray left behind
        try:
            import torch

            gpus = torch.cuda.device_count()
        except Exception:  # pragma: no cover
            gpus = 0
        ray.init(
            num_cpus=os.cpu_count(),
            num_gpus=gpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            object_store_memory=256 * 1024 * 1024,
        )
    resources = ray.cluster_resources()
    if spec.resources.gpu > 0 and resources.get("GPU", 0) < spec.resources.gpu:
        ray.shutdown()
        raise ConfigError(f"{spec.resources.gpu} GPU per trial requested, but the Ray cluster has "
                          f"{resources.get('GPU', 0):g} GPU (CPU {resources.get('CPU', 0):g}); set resources.gpu=0",
                          path=("resources", "gpu"), source=spec_path)
    if resources.get("CPU", 0) < spec.resources.cpu:
        ray.shutdown()
        raise ConfigError(f"{spec.resources.cpu} CPU per trial requested, the cluster has {resources.get('CPU', 0):g}",
                          path=("resources", "cpu"), source=spec_path)
    return resources




def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
