"""Start a test worker under torchrun: 2 processes (gloo on CPU) in a fresh interpreter each,
this checkout first on their path, one thread each; bounded in time (the workers' own gloo
timeouts end a rank left waiting in a collective well before ``timeout``)."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def torchrun(worker, out_dir, world=2, timeout=300, **env):
    """Run tests/``worker`` with ``out_dir`` as its argument and ``env`` added to the
    environment; assert it succeeded, showing the end of its stderr otherwise."""
    path = os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc_per_node={world}", os.path.join(HERE, worker), str(out_dir)],
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path, **env),
        capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
