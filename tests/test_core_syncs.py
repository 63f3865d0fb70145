"""Host reads of tensor values in a step (on a GPU each is a host-device synchronization): none
on the default step of any algorithm but those its algorithm needs (docs/benchmarks.md).

Counted with a TorchFunctionMode that sees every ``.item()``, ``bool()``, ``float()``,
``int()``, ``.tolist()``, ``.cpu()`` and ``.numpy()`` of a tensor, and names the arsam function
that made it. On the CPU these cost nothing; the count is what a GPU would synchronize on."""
import os
import sys

import pytest
from torch.overrides import TorchFunctionMode

from core_cases import ALL, closure_for, data, make, net

import arsam

READS = {"item", "__bool__", "__float__", "__int__", "__index__", "tolist", "cpu", "numpy"}
PACKAGE = os.path.dirname(arsam.__file__)
#: the functions that read values on the host in a default step, and why (docs/benchmarks.md)
NEEDED = {
    "ESAM": {"draw_swp_mask"},  # SWP's choice of tensors: drawn on the CPU generator
    "ARSAM-vsam": {"_store_psf", "decide", "slice_variance"},  # the schedule, on the host
    "ARSAM-matched": {"_store_psf"},
    "ARSAM-fixed": {"_store_psf"},
}


class HostReads(TorchFunctionMode):
    """Records (arsam function, method) of every read of a tensor value on the host."""

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS:
            frame = sys._getframe(1)
            while frame is not None and not frame.f_code.co_filename.startswith(PACKAGE):
                frame = frame.f_back
            self.reads.append((frame.f_code.co_name if frame else "<outside arsam>", name))
        return func(*args, **(kwargs or {}))


def reads_of_steps(name, steps=6, **kwargs):
    model = net()
    opt = make(name, model.parameters(), model=model, **kwargs)
    per_step = []
    for s in range(steps):
        closure = closure_for(model, *data(s))
        with HostReads() as mode:
            opt.step(closure)
        per_step.append((opt.stats["sampled"], mode.reads))
    return per_step


@pytest.mark.parametrize("name", ALL)
def test_a_default_step_reads_only_what_its_algorithm_needs(name):
    per_step = reads_of_steps(name)
    functions = {f for _, reads in per_step for f, _ in reads}
    assert functions <= NEEDED.get(name, set())
    for sampled, reads in per_step:
        psf_reads = [r for r in reads if r[0] == "_store_psf"]
        assert psf_reads == ([("_store_psf", "tolist")] if sampled and name.startswith("ARSAM")
                             else [])  # one read per sampled step: the schedule's statistics
    if name.startswith("ARSAM"):  # some steps reuse the PSF: they read nothing of the device
        assert any(not sampled for sampled, _ in per_step)


@pytest.mark.parametrize("name", ["SAM", "KSAM", "LookSAM", "MSAM"])
def test_skip_nonfinite_reads_one_flag_per_check(name):
    per_step = reads_of_steps(name, steps=3, skip_nonfinite=True)
    for _, reads in per_step:
        assert reads and set(reads) == {("_on_any_rank", "__bool__")}

