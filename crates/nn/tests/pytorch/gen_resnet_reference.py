"""Generates the PyTorch reference data of crates/nn/tests/resnet_pytorch.rs.

Run from crates/nn/tests with the PyTorch venv:  python pytorch/gen_resnet_reference.py

Writes into tests/data/:
* resnet18_formula_out.safetensors: outputs of the *full-width* torchvision ResNet-18 with the
  CIFAR stem (conv1 3x3 stride 1 no bias, maxpool and fc replaced by Identity) whose parameters,
  BatchNorm buffers and input all come from the integer formula `formula_values` below (which the
  Rust test reproduces bit for bit), for x of shape [2, 3, 32, 32]: `eval` (running statistics)
  and `train` (batch statistics) outputs [2, 512], and the BN running stats of `bn1` after the
  train-mode forward. Only the outputs are committed (the 45 MB of weights are recomputed).
* resnet18_w4.safetensors: a width-4 ResNet-18 with torchvision's module names and classes
  (torchvision's BasicBlock, conv1x1 downsample) with random weights and random running stats,
  written by safetensors.torch.save_file (num_batches_tracked stays int64, as torch saves it).
* resnet18_w4_io.safetensors: an input [2, 3, 32, 32] and that network's eval and train outputs.
* resnet18_keys.txt / resnet34_keys.txt: `name shape` of every state-dict entry of the CIFAR-stem
  torchvision resnet18 / resnet34 without fc, as torchvision lists them, preceded by the
  parameter count torch computes.
"""
import os
import numpy as np
import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock, conv1x1
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")


def fnv1a(name: str) -> int:
    h = 0x811C9DC5
    for b in name.encode():
        h = ((h ^ b) * 0x01000193) % 2**32
    return h


def formula_values(name: str, shape, kind: str, fan_in: int = 1) -> torch.Tensor:
    """u_i = ((i * 2654435761 + fnv1a(name)) mod 2^32) / 2^32, then an affine map per kind,
    all in float64 (exact integer arithmetic, one correctly rounded sqrt), cast to float32."""
    n = int(np.prod(shape)) if len(shape) else 1
    i = np.arange(n, dtype=np.uint64)
    h = (i * np.uint64(2654435761) + np.uint64(fnv1a(name))) % np.uint64(2**32)
    u = h.astype(np.float64) / 2.0**32
    if kind == "weight":  # conv: Kaiming-uniform with ReLU gain
        v = (2.0 * u - 1.0) * np.sqrt(6.0 / fan_in)
    elif kind == "bn_weight":
        v = 0.5 + u
    elif kind == "bn_bias":
        v = 0.2 * (u - 0.5)
    elif kind == "running_mean":
        v = 0.2 * (u - 0.5)
    elif kind == "running_var":
        v = 0.5 + u
    elif kind == "input":
        v = 2.0 * u - 1.0
    else:
        raise ValueError(kind)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def cifar_torchvision(make):
    m = make()
    m.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    m.fc = nn.Identity()
    return m


def fill_with_formula(model):
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            leaf = name.rsplit(".", 1)[1]
            if t.dim() == 4:
                v = formula_values(name, tuple(t.shape), "weight", t.shape[1] * t.shape[2] * t.shape[3])
            else:
                kind = {"weight": "bn_weight", "bias": "bn_bias"}.get(leaf, leaf)
                v = formula_values(name, tuple(t.shape), kind)
            t.copy_(v)


class NarrowResNet(nn.Module):
    """torchvision's ResNet (BasicBlock, CIFAR stem, no fc) with base width `w` instead of 64."""

    def __init__(self, layers, w):
        super().__init__()
        self.inplanes = w
        self.conv1 = nn.Conv2d(3, w, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(w, layers[0], 1)
        self.layer2 = self._make_layer(2 * w, layers[1], 2)
        self.layer3 = self._make_layer(4 * w, layers[2], 2)
        self.layer4 = self._make_layer(8 * w, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def main():
    torch.set_num_threads(1)
    # 1. Full-width torchvision ResNet-18, formula weights.
    m = cifar_torchvision(torchvision.models.resnet18)
    fill_with_formula(m)
    x = formula_values("input", (2, 3, 32, 32), "input")
    m.eval()
    with torch.no_grad():
        y_eval = m(x)
        m.train()
        y_train = m(x)
    save_file(
        {
            "eval": y_eval.contiguous(),
            "train": y_train.contiguous(),
            "bn1.running_mean": m.bn1.running_mean.clone(),
            "bn1.running_var": m.bn1.running_var.clone(),
        },
        os.path.join(OUT, "resnet18_formula_out.safetensors"),
    )
    print("formula eval |y| max", y_eval.abs().max().item(), "train", y_train.abs().max().item())

    # 2. Narrow ResNet-18 with random weights, written by torch.
    torch.manual_seed(0)
    n = NarrowResNet([2, 2, 2, 2], 4)
    with torch.no_grad():
        for mod in n.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.num_batches_tracked.fill_(7)
    sd = {k: v.contiguous() for k, v in n.state_dict().items()}
    save_file(sd, os.path.join(OUT, "resnet18_w4.safetensors"))
    x = torch.randn(2, 3, 32, 32)
    n.eval()
    with torch.no_grad():
        y_eval = n(x)
        n.train()
        y_train = n(x)
    save_file({"x": x, "eval": y_eval, "train": y_train}, os.path.join(OUT, "resnet18_w4_io.safetensors"))
    assert [k for k in sd] == [k for k in cifar_torchvision(torchvision.models.resnet18).state_dict()]

    # 3. State-dict names, shapes and parameter counts of the CIFAR-stem torchvision models.
    for arch in ["resnet18", "resnet34"]:
        m = cifar_torchvision(getattr(torchvision.models, arch))
        count = sum(p.numel() for p in m.parameters())
        with open(os.path.join(OUT, f"{arch}_keys.txt"), "w") as f:
            f.write(f"# torchvision.models.{arch}() with conv1 3x3/s1 no bias, maxpool=Identity, fc=Identity\n")
            f.write(f"# parameters: {count}\n")
            names = {n for n, _ in m.named_parameters()}
            for k, v in m.state_dict().items():
                kind = "param" if k in names else "buffer"
                f.write(f"{kind} {k} {list(v.shape)}\n")
        print(arch, count)


if __name__ == "__main__":
    main()
