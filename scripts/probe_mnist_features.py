#!/usr/bin/env python3
"""Probes a finished MNIST run's frozen encoder in PyTorch, to ask what limits its accuracy.

`cargo xtask mnist` trains one linear head (Adam, 100 epochs on the preset `best`) on the
encoder's 128-d output. This script recomputes the same features from the run's
`checkpoint.safetensors` (the report's encoder, PyTorch's layers, the report's split: labeled
images 24,000..30,000 of the training file, the 10,000 test images) and fits other linear
probes on them, so docs/recipes.md can tell the probe's share of the result from the encoder's:

  adam       the run's own probe, re-done in float32 (Adam 1e-3, batch 128, standardised features)
  lbfgs      L2-regularised logistic regression, full batch, L-BFGS in float64 (the SimCLR
             paper's linear protocol), at each weight of --l2 (the loss adds l2·‖W‖²)

on any of these feature sets, alone or joined with '+':

  h          the encoder's output, Linear(3136 → 128) (what the run probes)
  flat       the 3,136 pooled features of the second convolution, before that layer
  hidden     the projection head's 256-d hidden layer (after its ReLU)

`--random` probes a freshly initialised encoder (PyTorch's default init, seed 0) instead, the
floor that pretraining lifts. Usage (needs torch and numpy; MNIST's four .gz files):

    python3 scripts/probe_mnist_features.py runs/mnist --features h,flat,h+flat --l2 1e-4,1e-3
"""
import argparse
import gzip
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F


def read_idx(path):
    raw = gzip.open(path).read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_safetensors(path):
    raw = open(path, "rb").read()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        data = np.frombuffer(raw[base + start:base + end], np.float32).reshape(info["shape"])
        tensors[name] = torch.from_numpy(data.copy())
    return tensors


def random_encoder():
    torch.manual_seed(0)
    layers = {"encoder.0": torch.nn.Conv2d(1, 32, 3, padding=1),
              "encoder.3": torch.nn.Conv2d(32, 64, 3, padding=1),
              "encoder.7": torch.nn.Linear(3136, 128),
              "head.0": torch.nn.Linear(128, 256)}
    return {f"{k}.{p}": getattr(m, p).detach() for k, m in layers.items() for p in ("weight", "bias")}


def features(w, images):
    x = ((torch.from_numpy(images.astype(np.float32)) / 255.0 - 0.1307) / 0.3081)[:, None]
    with torch.no_grad():
        x = F.max_pool2d(F.relu(F.conv2d(x, w["encoder.0.weight"], w["encoder.0.bias"], padding=1)), 2)
        x = F.max_pool2d(F.relu(F.conv2d(x, w["encoder.3.weight"], w["encoder.3.bias"], padding=1)), 2)
        flat = x.flatten(1)
        h = F.linear(flat, w["encoder.7.weight"], w["encoder.7.bias"])
        hidden = F.relu(F.linear(h, w["head.0.weight"], w["head.0.bias"]))
    return {"h": h, "flat": flat, "hidden": hidden}


def standardise(train, test):
    mean, std = train.mean(0), train.std(0) + 1e-6
    return (train - mean) / std, (test - mean) / std


def accuracy(head, x, y):
    with torch.no_grad():
        return 100.0 * (head(x).argmax(1) == y).double().mean().item()


def adam_probe(x, y, x_test, y_test, epochs=100):
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(x.shape[1], 10)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            batch = order[i:i + 128]
            opt.zero_grad()
            F.cross_entropy(head(x[batch]), y[batch]).backward()
            opt.step()
    return accuracy(head, x, y), accuracy(head, x_test, y_test)


def lbfgs_probe(x, y, x_test, y_test, l2, iterations=300):
    x, x_test = x.double(), x_test.double()
    head = torch.nn.Linear(x.shape[1], 10).double()
    opt = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=iterations, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + l2 * (head.weight ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return accuracy(head, x, y), accuracy(head, x_test, y_test)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a finished run's directory (holds checkpoint.safetensors)")
    ap.add_argument("--features", default="h", help="comma-separated sets, e.g. h,flat,h+flat")
    ap.add_argument("--l2", default="1e-4,1e-3,3e-3", help="comma-separated L2 weights for L-BFGS")
    ap.add_argument("--random", action="store_true", help="probe a freshly initialised encoder")
    ap.add_argument("--data-dir", default=os.path.join(os.environ.get("SIMCLR_DATA_DIR", "data"), "mnist"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    weights = random_encoder() if args.random else read_safetensors(os.path.join(args.run, "checkpoint.safetensors"))
    train = read_idx(os.path.join(args.data_dir, "train-images-idx3-ubyte.gz"))[24000:30000]
    train_y = torch.from_numpy(read_idx(os.path.join(args.data_dir, "train-labels-idx1-ubyte.gz"))[24000:30000].astype(np.int64))
    test = read_idx(os.path.join(args.data_dir, "t10k-images-idx3-ubyte.gz"))
    test_y = torch.from_numpy(read_idx(os.path.join(args.data_dir, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    labeled, tested = features(weights, train), features(weights, test)
    for name in args.features.split(","):
        parts = name.split("+")
        x, x_test = standardise(torch.cat([labeled[p] for p in parts], 1), torch.cat([tested[p] for p in parts], 1))
        train_acc, test_acc = adam_probe(x, train_y, x_test, test_y)
        print(f"{name:12} {x.shape[1]:5}-d  adam 100 epochs      train {train_acc:6.2f} %  test {test_acc:6.2f} %", flush=True)
        for l2 in (float(v) for v in args.l2.split(",")):
            train_acc, test_acc = lbfgs_probe(x, train_y, x_test, test_y, l2)
            print(f"{name:12} {x.shape[1]:5}-d  lbfgs l2 {l2:<8g}    train {train_acc:6.2f} %  test {test_acc:6.2f} %", flush=True)


if __name__ == "__main__":
    main()
