"""Why LookSAM with α = 0.7 ends below SGD on Fashion-MNIST (docs/fidelity.md): one seed of the
benchmark's setting (3000 training / 2000 test images, SmallResNet width 16, batch 64, lr 0.05
with cosine decay, momentum 0.9 unless ``--momentum``, weight decay 5e-4, 15 epochs), printing
per epoch the test accuracy, the mean training loss and the mean r = ‖g_v‖/‖g‖ on SAM steps
(LookSAM's ``stats['gv_ratio']``: the size of SAM's own correction orthogonal to g, relative
to ‖g‖).

Variants: ``sam`` (LookSAM with k = 1, which is SAM: r along SAM's own trajectory), ``looksam``
(k = 5), ``fresh`` (g_v recomputed on every step, update g + α·‖g‖/‖g_v‖·g_v: LookSAM's
rescaling without the staleness).

    python scripts/looksam_ratio.py --variant fresh --alpha 0.7 --noise 0 --rho 0.2
"""
import argparse
import json

import torch

from arsam import LookSAM, fashion_mnist, nets
from arsam.bench.accuracy import evaluate
from arsam.bench.common import per_sample_closure, train_step


class FreshLookSAM(LookSAM):
    """Every step: g, g_s and g_v as on LookSAM's SAM steps, then g + α·‖g‖/‖g_v‖·g_v."""

    def _gradient(self, closure):
        loss = self._pass(closure)
        params = [p for group in self.param_groups for p in self._with_grad(group)]
        g = [p.grad for p in params]
        self._perturb()
        self._pass(closure)
        self._restore()
        g_s = [p.grad for p in params]
        g_norm = self._norm(g).double()
        g_v = torch._foreach_add(g_s, g, alpha=-(self._dot(g_s, g) / g_norm ** 2).item())
        self.stats.update(sampled=True, gv_ratio=(self._norm(g_v) / g_norm).item())
        torch._foreach_add_(g, g_v, alpha=(self.alpha * self._norm(g) / self._norm(g_v)).item())
        for p, update in zip(params, g):
            p.grad = update
        return loss.mean()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=("sam", "looksam", "fresh"), default="looksam")
    p.add_argument("--alpha", type=float, default=0.7)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--rho", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    x_tr, y_tr, x_te, y_te = fashion_mnist.load_fashion_mnist_split(
        None, 3000, 2000, noise=args.noise, seed=0)
    torch.manual_seed(args.seed)
    model = nets.SmallResNet(10, in_channels=1, width=16).train()
    cls, k = dict(sam=(LookSAM, 1), looksam=(LookSAM, 5), fresh=(FreshLookSAM, 1))[args.variant]
    opt = cls(model.parameters(), torch.optim.SGD, rho=args.rho, k=k, alpha=args.alpha,
              model=model, lr=0.05, momentum=args.momentum, weight_decay=5e-4)
    per_epoch = len(x_tr) // 64
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt.base_optimizer,
                                                          T_max=args.epochs * per_epoch)
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        order, losses, ratios = torch.randperm(len(x_tr), generator=generator), [], []
        for b in range(per_epoch):
            idx = order[b * 64:(b + 1) * 64]
            loss, stats = train_step(opt, per_sample_closure(model, x_tr[idx], y_tr[idx]))
            schedule.step()
            losses.append(loss.item())
            if stats.get("gv_ratio") is not None:
                ratios.append(float(stats["gv_ratio"]))
        print(json.dumps(dict(epoch=epoch, test_accuracy=evaluate(model, x_te, y_te),
                              train_loss=round(sum(losses) / len(losses), 4),
                              gv_ratio=round(sum(ratios) / len(ratios), 4))), flush=True)


if __name__ == "__main__":
    main()
