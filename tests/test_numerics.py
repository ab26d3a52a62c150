"""Numerics that decide speed: denormal floats flushed to zero in every thread that computes."""

import subprocess
import sys
import textwrap

import pytest

DENORMALS_AFTER_SETUP = textwrap.dedent("""
    import torch
    torch.set_num_threads(2)
    from sobolev.models import MLPConfig
    from sobolev.trainers import ImageRegressionConfig
    # a 128² image: setting up runs parallel ops (targets, sampling), which create this thread's OpenMP pool
    ImageRegressionConfig(image="astronaut", size=128, steps=1, model=MLPConfig("{network}")).setup()
    # the smallest denormal float32 (bit pattern 1), 4 M of them: split across both threads.  Read back by their
    # bits: under DAZ, reading a denormal as a number (even .item()) reads zero
    x = torch.ones(1 << 22, dtype=torch.int32).view(torch.float32)
    print(int(((x * 1.0).view(torch.int32) != 0).sum()))
""")


@pytest.mark.parametrize("network", ["gauss", "sine"])
def test_after_a_trainer_is_set_up_every_thread_flushes_denormals(network):
    """With FTZ/DAZ in the main thread only (``torch.set_flush_denormal`` after the pool exists), the chunk of the
    product computed by the other OpenMP thread keeps its denormals: half the elements stay non-zero."""
    proc = subprocess.run([sys.executable, "-c", DENORMALS_AFTER_SETUP.format(network=network)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip()) == 0, proc.stdout
