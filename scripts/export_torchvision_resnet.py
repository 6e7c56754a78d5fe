#!/usr/bin/env python3
"""Exports torchvision ResNet-18/34 weights to safetensors for `cargo xtask cifar10 --pretrained`.

Our encoder (`crates/nn/src/resnet.rs`) names every parameter and buffer exactly as torchvision's
state dict does, so exporting is a rename-free copy: every tensor is written as float32 under its
torchvision name (BatchNorm's int64 `num_batches_tracked` becomes a float32 scalar, which is how
our model stores it). Our loader (`LoadOptions::torchvision_resnet`) then skips `fc.*` and the
ImageNet 7x7 `conv1.weight`, which do not fit the CIFAR stem, and reports them.

Needs torch, torchvision and safetensors (a venv beside the project works):

    python3 -m venv ../torch-venv && ../torch-venv/bin/pip install torch torchvision safetensors

Two subcommands:

  export   ImageNet weights you already have, as torchvision caches them
           (~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth, resnet34-b627a593.pth), or
           `--weights torchvision` to let torchvision download IMAGENET1K_V1 (needs internet):

             python scripts/export_torchvision_resnet.py export --arch resnet18 \\
                 --weights ~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth \\
                 --out resnet18-imagenet.safetensors

  fixture  The small test fixture of `crates/nn/tests/pretrained_fixture.rs`: a seeded,
           randomly initialised ResNet-18 of base width 8 (widths 8/16/32/64, CIFAR stem, no fc)
           built from torchvision's own `ResNet` class, exported like the ImageNet weights, plus
           a sibling `<out stem>_io.safetensors` holding 4 fixed images [4, 3, 32, 32] (`images`)
           and PyTorch's eval-mode features for them [4, 64] (`features`):

             python scripts/export_torchvision_resnet.py fixture \\
                 --out crates/nn/tests/fixtures/resnet18_w8_cifar.safetensors
"""
import argparse
import os
import sys

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import load_file, save_file
from torchvision.models.resnet import BasicBlock

ARCHS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}


def to_f32_state_dict(model: nn.Module) -> dict:
    """The model's state dict as contiguous float32 CPU tensors, names unchanged."""
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}


def save_checked(tensors: dict, path: str, metadata: dict) -> None:
    """Writes `tensors` to `path` and reads the file back to check it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(tensors, path, metadata=metadata)
    back = load_file(path)
    assert back.keys() == tensors.keys()
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)


def versions() -> dict:
    return {"torch": torch.__version__, "torchvision": torchvision.__version__}


# ---------------------------------------------------------------------------------------------
# export


def read_state_dict(weights: str, arch: str) -> dict:
    """A torchvision state dict from a .pth file, or downloaded with `weights == "torchvision"`."""
    if weights == "torchvision":
        return getattr(torchvision.models, arch)(weights="IMAGENET1K_V1").state_dict()
    sd = torch.load(os.path.expanduser(weights), map_location="cpu", weights_only=True)
    # Tolerate the usual wrappers around a bare state dict.
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    return {k.removeprefix("module."): v for k, v in sd.items()}


def export(args) -> None:
    sd = read_state_dict(args.weights, args.arch)
    # Loading into torchvision's model (strict) rejects a file of another architecture with
    # PyTorch's own list of missing / unexpected / mis-shaped keys.
    model = getattr(torchvision.models, args.arch)()
    model.load_state_dict(sd, strict=True)
    tensors = to_f32_state_dict(model)
    meta = {"source": f"torchvision.models.{args.arch}", "weights": os.path.basename(args.weights), **versions()}
    save_checked(tensors, args.out, meta)
    n = sum(t.numel() for k, t in tensors.items() if not k.endswith("num_batches_tracked"))
    print(f"wrote {len(tensors)} tensors ({n:,} values) to {args.out}")
    print(f"conv1.weight {list(tensors['conv1.weight'].shape)} (ImageNet 7x7 stem) and fc.* will be "
          "skipped by the CIFAR-stem loader; use: cargo xtask cifar10 "
          f"--arch {args.arch} --width 64 --pretrained {args.out}")


# ---------------------------------------------------------------------------------------------
# fixture


def cifar_resnet(arch: str, width: int) -> torchvision.models.ResNet:
    """torchvision's ResNet with the CIFAR stem (3x3/s1 conv1, no max-pool, no fc) and base
    width `width`: its stages are rebuilt by torchvision's own `_make_layer`, so module names,
    block structure and forward are torchvision's."""
    m = torchvision.models.ResNet(BasicBlock, ARCHS[arch])
    m.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    m.bn1 = nn.BatchNorm2d(width)
    m.maxpool = nn.Identity()
    m.inplanes = width
    m.layer1 = m._make_layer(BasicBlock, width, ARCHS[arch][0])
    m.layer2 = m._make_layer(BasicBlock, 2 * width, ARCHS[arch][1], stride=2)
    m.layer3 = m._make_layer(BasicBlock, 4 * width, ARCHS[arch][2], stride=2)
    m.layer4 = m._make_layer(BasicBlock, 8 * width, ARCHS[arch][3], stride=2)
    m.fc = nn.Identity()
    return m


def fixture(args) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    m = cifar_resnet("resnet18", args.width)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.Conv2d):  # torchvision's init: Kaiming-normal, fan-out
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(mod, nn.BatchNorm2d):  # non-trivial affine parameters
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
        # Non-trivial running statistics: a few train-mode passes on shifted, scaled noise.
        m.train()
        for _ in range(5):
            m(0.3 + 1.5 * torch.randn(16, 3, 32, 32))
        m.eval()
        images = torch.randn(4, 3, 32, 32)
        features = m(images)
    assert features.shape == (4, 8 * args.width)

    tensors = to_f32_state_dict(m)
    # The names must be exactly those of torchvision's resnet18 without fc.
    ref = torchvision.models.resnet18().state_dict()
    assert list(tensors) == [k for k in ref if not k.startswith("fc.")]

    meta = {"source": f"scripts/export_torchvision_resnet.py fixture --seed {args.seed} --width {args.width}",
            **versions()}
    save_checked(tensors, args.out, meta)
    stem, ext = os.path.splitext(args.out)
    io = f"{stem}_io{ext}"
    save_checked({"images": images.contiguous(), "features": features.contiguous()}, io, meta)
    print(f"wrote {len(tensors)} tensors to {args.out} ({os.path.getsize(args.out):,} bytes) and "
          f"images {list(images.shape)} / features {list(features.shape)} to {io} "
          f"({os.path.getsize(io):,} bytes); |features| max {features.abs().max():.4f}, "
          f"min {features.abs().min():.4g}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="torchvision ImageNet weights -> safetensors")
    e.add_argument("--arch", choices=sorted(ARCHS), required=True)
    e.add_argument("--weights", required=True,
                   help='a torchvision .pth state dict, or "torchvision" to download IMAGENET1K_V1')
    e.add_argument("--out", required=True, help="the .safetensors file to write")
    e.set_defaults(run=export)
    f = sub.add_parser("fixture", help="the small ResNet-18 test fixture of crates/nn/tests")
    f.add_argument("--out", default="crates/nn/tests/fixtures/resnet18_w8_cifar.safetensors")
    f.add_argument("--width", type=int, default=8)
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(run=fixture)
    args = p.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
