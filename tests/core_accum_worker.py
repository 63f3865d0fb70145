"""Worker of tests/test_core_accumulate.py, started by torchrun (2 processes, gloo): each case
of ACCUM_CASES trained on a DDP model with per-replica ascent (``sync_ascent=False``), rank r
taking part r of each step's batch; once with one batch per rank (the reference of 2
accumulated micro-batches) and once with 2 micro-batches per rank, accumulated (the reference
of 4), by DDP pass by pass or, in ``no_sync``, once per step by ``replica_mean``. Saves per
rank the weights and stats after each step."""
import contextlib
import sys

import torch
import torch.distributed as dist
from core_cases import closure_for, data, make, net
from torch import nn

#: the accumulation cases: the settings give ARSAM reuse steps and random decisions
ACCUM_CASES = {
    "SAM": {}, "ESAM": {}, "KSAM": dict(k1=0.25, k2=0.5), "PeriodicSAM": {}, "MSAM": {},
    "ARSAM-fixed": dict(start_iter=1), "ARSAM-vsam": dict(quota=False),
    "ARSAM-matched": dict(start_iter=1)}
STEPS, BATCH = 6, 32
#: (micro-batches per rank, synchronized once per step by ``replica_mean``)
MODES = [(1, False), (2, False), (2, True)]


def parts(step, n):
    """Step ``step``'s batch of BATCH samples cut into ``n`` equal micro-batches."""
    x, y = data(step, n=BATCH)
    return list(zip(x.chunk(n), y.chunk(n)))


def replica_mean(grads):
    """The mean over the ranks, in place (``replica_mean``)."""
    for g in grads:
        dist.all_reduce(g)
        g.div_(dist.get_world_size())


def train(case, world, rank, micro, once):
    """``micro`` micro-batches per rank; ``once``: in ``no_sync``, averaged by ``replica_mean``
    once per step, else synchronized by DDP pass by pass."""
    model = nn.parallel.DistributedDataParallel(net(seed=0), broadcast_buffers=False)
    opt = make(case, model.module.parameters(), **ACCUM_CASES[case])
    opt.ascent_context = model.no_sync  # per-replica ascent (the SAM paper's m-sharpness)
    if once:
        opt.replica_mean = replica_mean
    record = []
    for step in range(STEPS):
        mine = parts(step, world * micro)[rank * micro:(rank + 1) * micro]
        with model.no_sync() if once else contextlib.nullcontext():
            if micro == 1:
                opt.step(closure_for(model, *mine[0]))
            else:
                for x, y in mine:
                    opt.accumulate(closure_for(model, x, y))
                opt.step()
        record.append(snapshot(opt, model.module))
    return record


def snapshot(opt, model):
    """What a step leaves: weights, stats, the generator, ARSAM's stored PSF."""
    return dict(stats=dict(opt.stats), generator=opt.generator.get_state(),
                weights=[p.detach().clone() for p in model.parameters()],
                psf=[opt.state[p]["psf"].clone() for p in model.parameters()
                     if "psf" in opt.state[p]])


def main(out_dir):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    results = {(case, micro, once): train(case, world, rank, micro, once)
               for case in ACCUM_CASES for micro, once in MODES}
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.barrier()  # every rank done with the group's work before it is torn down
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
