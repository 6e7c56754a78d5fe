# Reference values for crates/nn/tests/optim_pytorch.rs (run with the PyTorch venv).
# Parameters w [2,3] and b [3]; loss = sum(c*w*w) + sum(d*w) + sum(e*b*b) + sum(f*b);
# five steps of each optimizer; prints the parameters after the last step.
import numpy as np
import torch
torch.set_printoptions(precision=10)

def params():
    w = torch.tensor([[0.5, -1.0, 2.0], [0.25, -0.75, 1.5]], requires_grad=True)
    b = torch.tensor([0.1, -0.2, 0.3], requires_grad=True)
    return w, b

c = torch.tensor([[1.0, 0.5, 2.0], [0.3, 1.5, 0.8]]); d = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.4, -0.5]])
e = torch.tensor([0.7, 1.2, 0.4]); f = torch.tensor([-0.3, 0.2, 0.1])

def loss(w, b):
    return (c * w * w).sum() + (d * w).sum() + (e * b * b).sum() + (f * b).sum()

def run(make, steps=5):
    w, b = params(); opt = make([w, b])
    for _ in range(steps):
        opt.zero_grad(); loss(w, b).backward(); opt.step()
    return w.detach().flatten().tolist() + b.detach().tolist()

def lars(ps, lr=0.1, momentum=0.9, wd=0.01, eta=0.001, steps=5, nesterov=False):
    # SimCLR's LARSOptimizer, 1-D tensors excluded from decay and adaptation.
    w, b = ps; v = [torch.zeros_like(p) for p in ps]
    for _ in range(steps):
        for p in ps: p.grad = None
        loss(w, b).backward()
        with torch.no_grad():
            for i, p in enumerate(ps):
                g = p.grad.clone(); excluded = p.dim() < 2
                if not excluded: g = g + wd * p
                if excluded: slr = lr
                else:
                    wn, gn = p.norm(), g.norm()
                    slr = lr * (eta * wn / gn if wn > 0 and gn > 0 else 1.0)
                v[i] = momentum * v[i] + slr * g
                p -= (momentum * v[i] + slr * g) if nesterov else v[i]
    return w.detach().flatten().tolist() + b.detach().tolist()

cases = {
    "adam": run(lambda ps: torch.optim.Adam(ps, lr=0.1)),
    "adam_l2": run(lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adamw": run(lambda ps: torch.optim.AdamW(ps, lr=0.1, weight_decay=0.1)),
    "sgd": run(lambda ps: torch.optim.SGD(ps, lr=0.1)),
    "sgd_momentum": run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd_nesterov": run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
}
w, b = params(); cases["lars"] = lars([w, b])
w, b = params(); cases["lars_nesterov"] = lars([w, b], lr=0.5, nesterov=True)
for k, v in cases.items():
    print(f"const {k.upper()}: [f32; 9] = [{', '.join(str(np.float32(x)) for x in v)}];")
