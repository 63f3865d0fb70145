"""LSQ W4A4 fine-tuning of ResNet-18 from a float checkpoint with ARSAM, then export to integer
codes (vsam.txt Sec. 4.5: quantization-aware training with a sharpness-aware optimizer).

    python docs/examples/lsq_w4a4_resnet18.py --data-root data/cifar10 --fp-checkpoint fp.pth \
        --epochs 60                    # CIFAR-10 (torchvision layout, never downloaded here)
    python docs/examples/lsq_w4a4_resnet18.py   # offline: digits at 32x32, float model trained here

1. The float model: the CIFAR ResNet-18 (``arsam.nets.cifar_resnet18``) loaded from
   ``--fp-checkpoint`` (a ``state_dict`` saved with ``torch.save``), or trained here with SGD
   for ``--fp-epochs`` and saved to the work dir when none is given.
2. ``quant.quantize_model``: every Conv2d/Linear quantizes its weights (one step per output
   channel) and its input to 4 bits; the first conv and the classifier to 8 bits.
3. Fine-tuning with ARSAM around SGD (cosine decay from lr 0.01); the LSQ step sizes are trained
   but kept out of the sharpness-aware perturbation (``quant.lsq_param_groups``: their group has
   ``rho=0``).
4. ``quant.export_quantized``: per layer the int8 weight codes, the step sizes and the layer's
   geometry, saved with ``torch.save`` (loads with ``weights_only=True``); each layer's integer
   reference (``quant.integer_forward``: integer codes accumulated in int64, then scaled) is
   checked against the fake-quantized layer on a test batch.

mmengine users: ``configs/quant/resnet18_w4a4_arsam.py`` (docs/quant.md).
"""
import argparse
import os

import torch
import torch.nn.functional as F

import arsam
import quant
from arsam.digits import load_digits_split
from arsam.nets import cifar_resnet18


def load_data(data_root, test_samples=None):
    """(x_train, y_train, x_test, y_test) as 3x32x32 tensors: CIFAR-10 from ``data_root``, or
    the offline digits upsampled to 32x32 and repeated over 3 channels; the first
    ``test_samples`` test images (None: all)."""
    if data_root:
        from arsam.bench.accuracy import cifar_split
        x_train, y_train, x_test, y_test = cifar_split(data_root, "cifar10", noise=0.0)
    else:
        x_train, y_train, x_test, y_test = load_digits_split()
        grow = lambda x: F.interpolate(x, size=32, mode="bilinear").repeat(1, 3, 1, 1)  # noqa
        x_train, x_test = grow(x_train), grow(x_test)
    return x_train, y_train, x_test[:test_samples], y_test[:test_samples]


def fit(model, opt, data, epochs, batch_size, max_steps, device):
    """Train with cosine decay; ``opt`` is a torch optimizer or an arsam one (closure step)."""
    x_train, y_train = data[0], data[1]
    per_epoch = min(len(y_train) // batch_size, max_steps or len(y_train))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * per_epoch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y_train))
        for b in range(per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            x, y = x_train[idx].to(device), y_train[idx].to(device)

            def closure(indices=None):
                xb, yb = (x, y) if indices is None else (x[indices], y[indices])
                return F.cross_entropy(model(xb), yb, reduction="none")

            if isinstance(opt, arsam.SharpnessAwareOptimizer):
                opt.step(closure)
            else:
                opt.zero_grad()
                closure().mean().backward()
                opt.step()
            scheduler.step()


@torch.no_grad()
def accuracy(model, data, device, batch_size=500):
    model.eval()
    x, y = data[2], data[3]
    correct = sum((model(x[i:i + batch_size].to(device)).argmax(1).cpu() == y[i:i + batch_size])
                  .sum().item() for i in range(0, len(y), batch_size))
    return 100.0 * correct / len(y)


@torch.no_grad()
def check_export(model, exported, x):
    """The largest relative difference between each quantized layer's output on ``x`` and its
    integer reference from ``exported``."""
    inputs, outputs, hooks = {}, {}, []
    for name, layer in model.named_modules():
        if name in exported:
            def keep(module, args, out, name=name):
                inputs[name], outputs[name] = args[0], out
            hooks.append(layer.register_forward_hook(keep))
    model.eval()
    model(x)
    for hook in hooks:
        hook.remove()
    return max(((quant.integer_forward(exported[n], inputs[n]).to(outputs[n].device)
                 - outputs[n]).abs().max() / outputs[n].abs().max().clamp_min(1e-12)).item()
               for n in exported)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="CIFAR-10 in torchvision's layout")
    parser.add_argument("--fp-checkpoint", default=None, help="float ResNet-18 state_dict")
    parser.add_argument("--fp-epochs", type=int, default=5,
                        help="epochs of the float model when no --fp-checkpoint is given")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of W4A4 fine-tuning")
    parser.add_argument("--warmup-epochs", type=float, default=3,
                        help="ARSAM's epochs of plain SAM first (official: 3)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="cut every epoch short (quick checks)")
    parser.add_argument("--test-samples", type=int, default=None,
                        help="evaluate on the first n test images (quick checks)")
    parser.add_argument("--work-dir", default="work_dirs/lsq_w4a4_resnet18")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    os.makedirs(args.work_dir, exist_ok=True)
    torch.manual_seed(0)
    data = load_data(args.data_root, args.test_samples)
    sgd = dict(momentum=0.9, weight_decay=5e-4)

    # 1. the float checkpoint
    model = cifar_resnet18(10).to(device)
    path = args.fp_checkpoint
    if path is None:
        fit(model, torch.optim.SGD(model.parameters(), lr=0.05, **sgd), data, args.fp_epochs,
            args.batch_size, args.max_steps, device)
        path = os.path.join(args.work_dir, "resnet18_fp.pth")
        torch.save(model.state_dict(), path)
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    print(f"float ResNet-18 ({path}): test accuracy {accuracy(model, data, device):.2f} %")

    # 2. W4A4, first and last layer 8 bits
    quant.quantize_model(model, w_bits=4, a_bits=4, first_last_bits=8)

    # 3. fine-tuning with ARSAM; step sizes trained, not perturbed
    per_epoch = min(len(data[1]) // args.batch_size, args.max_steps or len(data[1]))
    opt = arsam.ARSAM(quant.lsq_param_groups(model), torch.optim.SGD, rho=0.05, lr=0.01, **sgd,
                      model=model, warmup_epochs=args.warmup_epochs, steps_per_epoch=per_epoch)
    fit(model, opt, data, args.epochs, args.batch_size, args.max_steps, device)
    print(f"W4A4 ResNet-18: test accuracy {accuracy(model, data, device):.2f} %")

    # 4. export the integer codes and check them against the fake-quantized layers
    exported = quant.export_quantized(model)
    out = os.path.join(args.work_dir, "resnet18_w4a4_codes.pth")
    torch.save(exported, out)
    error = check_export(model, exported, data[2][:8].to(device))
    print(f"exported {len(exported)} layers to {out}; integer reference vs fake-quantized "
          f"layers: largest relative difference {error:.1e}")
    return exported, error


if __name__ == "__main__":
    main()
