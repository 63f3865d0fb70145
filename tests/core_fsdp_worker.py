"""Worker of tests/test_core_fsdp.py, started by torchrun (2 processes, gloo on CPU).

For every case (an optimizer on a layout: ``fully_shard`` or FSDP1) it trains a sharded copy of a
tiny float64 model for STEPS steps, each rank on its half of the global batch, and, on every
rank, the unsharded optimizer on the whole global batch; it also resumes the sharded run from the
rank's model and optimizer state dicts saved before step RESUME_AT. Saves per rank and case the
gathered weights, the sampling decisions of both runs, the resumed run's final weights, or the
error a step raised."""
import copy
import datetime
import io
import os
import sys
import traceback

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard

import arsam

STEPS, N = 5, 6  # steps; samples per rank and step
RESUME_AT = 2  # the state dicts saved before this step resume the run (bit-identically)
ARSAM = dict(start_iter=1, norm_params=None)
#: name: (optimizer class name, its arguments, whether both ranks get the same batch)
CASES = {
    "SAM": ("SAM", {}, False),
    "ASAM": ("SAM", dict(adaptive=True, rho=0.5), False),
    "ESAM": ("ESAM", dict(beta=0.6, gamma=1.0), False),
    "ESAM-SDS": ("ESAM", dict(beta=0.6, gamma=0.5), True),
    "KSAM": ("KSAM", dict(k1=0.5, k2=0.5), True),
    "LookSAM": ("LookSAM", dict(k=2), False),
    "MSAM": ("MSAM", {}, False),
    "ARSAM-matched": ("ARSAM", dict(ARSAM, schedule="matched"), False),
    "ARSAM-vsam": ("ARSAM", dict(ARSAM, schedule="vsam", window=2, slices=1, max_rate=1.0),
                   False),
    "ARSAM-fixed": ("ARSAM", dict(ARSAM, schedule="fixed", rate=0.5), False),
    # the schedule's norms on the last 2 tensors (FSDP1: held by one rank), 3 sampled steps
    "ARSAM-last2": ("ARSAM", dict(ARSAM, start_iter=3, norm_params=2), False),
    "SAM-one-weight": ("SAM", {}, False),  # a model of 1 element: rank 1 holds none of it
    "SAM-skip": ("SAM", dict(skip_nonfinite=True), False),  # rank 1's half is NaN at step NAN_AT
}
NAN_AT = 3
LAYOUTS = ("fsdp2", "fsdp1", "fsdp1-flat")  # fsdp1-flat: use_orig_params=False
NORMS = ("psf_norm", "sgd_norm")  # ARSAM's schedule statistics (None for the others)


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()


class OneWeight(nn.Module):
    """Logits x[:, :3]·w of a single weight w."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1, dtype=torch.float64))

    def forward(self, x):
        return x[:, :3] * self.w


def shard(model, layout):
    if layout == "fsdp2":
        for m in (*model.children(), model):
            if next(m.parameters(), None) is not None:
                fully_shard(m)
        return model
    return FullyShardedDataParallel(model, device_id=torch.device("cpu"),
                                    use_orig_params=layout == "fsdp1")


def full_weights(model, layout):
    if layout == "fsdp2":
        return [p.full_tensor().detach().clone() for p in model.parameters()]
    with FullyShardedDataParallel.summon_full_params(model):
        return [p.detach().clone() for p in model.parameters()]


def make(name, model, args):
    cls = getattr(arsam, name)
    return cls(model, torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3, **args)


def record_swp(opt):
    """A list that gets, at each of ESAM's SWP draws, the indices of the tensors left out."""
    drawn = []
    draw = opt.draw_swp_mask

    def recording():
        draw()
        off = {id(p) for p in opt._swp_mask[1]}
        drawn.append([i for i, p in enumerate(opt._params()) if id(p) in off])
    opt.draw_swp_mask = recording
    return drawn


def closure_for(model, x, y):
    def closure(indices=None):
        xs, ys = (x, y) if indices is None else (x[indices], y[indices])
        return F.cross_entropy(model(xs), ys, reduction="none")
    return closure


def model_of(name):
    return OneWeight() if name == "SAM-one-weight" else net()


def checkpoint(model, opt):
    """The rank's model and optimizer state dicts, serialized (torch.save)."""
    buffer = io.BytesIO()
    torch.save(dict(model=model.state_dict(), optimizer=opt.state_dict()), buffer)
    return buffer.getvalue()


def resumed(name, layout, saved, batches, rank):
    """A fresh sharded model and optimizer loaded (weights-only) from ``saved``, trained on
    ``batches``; the gathered weights."""
    model = shard(model_of(name), layout)
    opt = make(CASES[name][0], model, CASES[name][1])
    state = torch.load(io.BytesIO(saved), weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    for x, y in batches:
        opt.step(closure_for(model, x[rank], y[rank]))
    return full_weights(model, layout)


def run_case(name, layout, rank, world):
    cls, args, same_batch = CASES[name]
    reference = model_of(name)
    sharded = shard(copy.deepcopy(reference), layout)
    opt, ref_opt = make(cls, sharded, args), make(cls, reference, args)
    swp, ref_swp = (record_swp(opt), record_swp(ref_opt)) if cls == "ESAM" else ([], [])
    g = torch.Generator().manual_seed(1)
    record, batches = [], []
    for step in range(STEPS):
        if step == RESUME_AT:
            saved = checkpoint(sharded, opt)
        x = torch.randn(world, N, 5, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (world, N), generator=g)
        if same_batch:
            x, y = x[:1].expand_as(x), y[:1].expand_as(y)
        if name == "SAM-skip" and step == NAN_AT:
            x[1] = float("nan")  # the unsharded step sees it too: both skip
        batches.append((x, y))
        opt.step(closure_for(sharded, x[rank], y[rank]))
        ref_opt.step(closure_for(reference, x.flatten(0, 1), y.flatten(0, 1)))
        record.append(dict(sampled=opt.stats["sampled"], ref_sampled=ref_opt.stats["sampled"],
                           skipped=opt.skipped_steps, ref_skipped=ref_opt.skipped_steps,
                           swp=swp[-1:], ref_swp=ref_swp[-1:],
                           norms=[opt.stats.get(k) for k in NORMS],
                           ref_norms=[ref_opt.stats.get(k) for k in NORMS],
                           weights=full_weights(sharded, layout),
                           ref_weights=[p.detach().clone() for p in reference.parameters()]))
    record[-1]["resumed_weights"] = resumed(name, layout, saved, batches[RESUME_AT:], rank)
    return record


def main(out_dir):
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
    rank, world = dist.get_rank(), dist.get_world_size()
    results = {}
    only = os.environ.get("ARSAM_ONLY")
    for layout in LAYOUTS:
        for name in CASES:
            if only and f"{layout}:{name}" not in only.split(","):
                continue
            try:
                results[layout, name] = run_case(name, layout, rank, world)
            except Exception as error:  # the test says which are expected
                results[layout, name] = f"{type(error).__name__}: {error}"
                if os.environ.get("ARSAM_DEBUG"):
                    traceback.print_exc()
            dist.barrier()
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.barrier()  # every rank done with the group's work before it is torn down
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
