"""GradNorm reference (paper formulation, arXiv:1711.02257) for tests/train/gradnorm_test.cpp.

Trains a toy shared-trunk multi-task regressor with SGD while balancing the task losses with GradNorm written the
way the paper states it: G_i = ||grad_W (w_i L_i)|| via autograd with create_graph, r_i = (L_i/L_i(0)) / mean,
L_grad = sum |G_i - sg[mean(G) r_i^alpha]|, w.grad = dL_grad/dw, torch.optim.Adam on w, then clamp > 0 and
renormalise to sum T. Writes init weights, inputs and the expected weight history as safetensors.

usage: gradnorm_ref.py OUT.safetensors NUM_TASKS ALPHA LR STEPS [OUT2 NUM_TASKS2 ALPHA2 LR2 STEPS2 ...]
"""
import sys

import torch
from safetensors.torch import save_file


def case(out, T, alpha, lr, K):
    torch.manual_seed(1234)
    N, D, H = 32, 4, 16
    l1 = torch.nn.Linear(D, H)
    l2 = torch.nn.Linear(H, H)  # the last shared layer W
    heads = torch.nn.ModuleList([torch.nn.Linear(H, 1) for _ in range(T)])
    init = {"l1.weight": l1.weight, "l1.bias": l1.bias, "l2.weight": l2.weight, "l2.bias": l2.bias}
    for t in range(T):
        init[f"head{t}.weight"] = heads[t].weight
        init[f"head{t}.bias"] = heads[t].bias
    tensors = {k: v.detach().clone().contiguous() for k, v in init.items()}

    x = torch.randn(K, N, D)
    # Targets of very different scale and difficulty so the loss rates differ.
    fns = [lambda v: v.sum(-1), lambda v: 5.0 * torch.sin(3.0 * v[..., 0]), lambda v: v[..., 1] * v[..., 2]]
    y = torch.stack([fns[t](x) for t in range(T)], -1)  # [K, N, T]
    tensors["x"] = x
    tensors["y"] = y

    model_params = list(l1.parameters()) + list(l2.parameters()) + list(heads.parameters())
    opt = torch.optim.SGD(model_params, lr=0.05)
    w = torch.ones(T, requires_grad=True)
    opt_w = torch.optim.Adam([w], lr=lr)
    W = list(l2.parameters())
    L0 = None
    hist_w, hist_loss = [], []
    for k in range(K):
        feats = torch.tanh(l2(torch.tanh(l1(x[k]))))
        L = torch.stack([torch.nn.functional.mse_loss(heads[t](feats).squeeze(-1), y[k, :, t]) for t in range(T)])
        if L0 is None:
            L0 = L.detach().clone()
        G = []
        for i in range(T):
            grads = torch.autograd.grad(w[i] * L[i], W, retain_graph=True, create_graph=True)
            G.append(torch.cat([g.flatten() for g in grads]).norm())
        G = torch.stack(G)
        ratio = L.detach() / L0
        r = ratio / ratio.mean()
        target = (G.mean() * r.pow(alpha)).detach()
        lgrad = (G - target).abs().sum()
        wgrad = torch.autograd.grad(lgrad, w, retain_graph=True)[0]
        total = (w.detach() * L).sum()
        opt.zero_grad()
        total.backward()
        opt.step()
        w.grad = wgrad
        opt_w.step()
        with torch.no_grad():
            w.clamp_(min=1e-6)
            w.mul_(T / w.sum())
        hist_w.append(w.detach().clone())
        hist_loss.append(L.detach().clone())
    tensors["expected_weights"] = torch.stack(hist_w)  # [K, T] after each step
    tensors["expected_losses"] = torch.stack(hist_loss)  # [K, T] before each step
    save_file({k: v.contiguous() for k, v in tensors.items()}, out)


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or len(args) % 5:
        sys.exit(__doc__)
    for i in range(0, len(args), 5):
        a = args[i : i + 5]
        case(a[0], int(a[1]), float(a[2]), float(a[3]), int(a[4]))
