"""Worker of tests/test_core_protocol.py's DDP test, started by torchrun (2 processes, gloo):
SAM with skip_nonfinite on a DDP model; rank 1's batch of step 1 holds a NaN. Saves per rank
the weights after each step and the stats."""
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import arsam

STEPS, BAD_STEP = 3, 1


def main(out_dir):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(4, 8), nn.ReLU(),
                                                              nn.Linear(8, 3)))
    opt = arsam.SAM(model, torch.optim.SGD, lr=0.1, skip_nonfinite=True)
    g = torch.Generator().manual_seed(10 + rank)
    record = []
    for step in range(STEPS):
        x, y = torch.randn(6, 4, generator=g), torch.randint(0, 3, (6,), generator=g)
        if rank == 1 and step == BAD_STEP:
            x[0, 0] = float("nan")
        opt.step(lambda indices=None: F.cross_entropy(model(x), y, reduction="none"))
        record.append(dict(stats=dict(opt.stats), skipped_steps=opt.skipped_steps,
                           weights=[p.detach().clone() for p in model.parameters()]))
    torch.save(record, f"{out_dir}/rank{rank}.pt")
    dist.barrier()  # every rank done with the group's work before it is torn down
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
