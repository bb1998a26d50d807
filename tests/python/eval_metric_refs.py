"""Reference values for janus::eval retrieval / top-k / PSNR / SSIM / FID / IS tests.

usage: eval_metric_refs.py OUT_DIR -> OUT_DIR/inputs.safetensors, OUT_DIR/expected.json

Retrieval follows BLIP/LAVIS itm_eval (argsort, best rank over an image's captions); SSIM is a small numpy/scipy
implementation of pytorch-msssim's ssim (Gaussian 11 / 1.5, valid filtering, K = 0.01, 0.03); FID is pytorch-fid's
calculate_frechet_distance (scipy.linalg.sqrtm); IS follows the usual 10-split formula.
"""
import json
import sys

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from safetensors.torch import save_file
from scipy.signal import convolve2d


def recall(sim, txt2img):
    n_img, n_txt = sim.shape
    img2txt = [[] for _ in range(n_img)]
    for t, i in enumerate(txt2img):
        img2txt[i].append(t)
    ranks = np.zeros(n_img)
    for index, score in enumerate(sim):
        inds = np.argsort(score)[::-1]
        ranks[index] = min(np.where(inds == i)[0][0] for i in img2txt[index])
    tr = [100.0 * np.mean(ranks < k) for k in (1, 5, 10)]
    ranks = np.zeros(n_txt)
    for index, score in enumerate(sim.T):
        inds = np.argsort(score)[::-1]
        ranks[index] = np.where(inds == txt2img[index])[0][0]
    ir = [100.0 * np.mean(ranks < k) for k in (1, 5, 10)]
    return tr, ir


def ssim_ref(a, b, data_range=1.0):
    x = np.arange(11) - 5
    g = np.exp(-(x ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()
    w = np.outer(g, g)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for n in range(a.shape[0]):
        for c in range(a.shape[1]):
            X, Y = a[n, c], b[n, c]
            f = lambda z: convolve2d(z, w[::-1, ::-1], mode="valid")
            mu1, mu2 = f(X), f(Y)
            s11, s22, s12 = f(X * X) - mu1 ** 2, f(Y * Y) - mu2 ** 2, f(X * Y) - mu1 * mu2
            m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s11 + s22 + c2))
            vals.append(m.mean())
    return float(np.mean(vals))


def inception_score(p, splits=10):
    part = p.shape[0] // splits
    scores = []
    for k in range(splits):
        q = p[k * part:(k + 1) * part]
        py = q.mean(0, keepdims=True)
        scores.append(np.exp(np.mean(np.sum(q * (np.log(q) - np.log(py)), 1))))
    return float(np.mean(scores)), float(np.std(scores))


def stats(f):
    return f.mean(0), np.cov(f, rowvar=False)


def main(out):
    g = torch.Generator().manual_seed(20261124)
    n_img, per = 100, 5
    txt2img = torch.arange(n_img).repeat_interleave(per)
    sim = torch.randn(n_img, n_img * per, generator=g, dtype=torch.float64)
    sim[txt2img, torch.arange(n_img * per)] += 2.0  # matched pairs score higher on average
    tr, ir = recall(sim.numpy(), txt2img.numpy())

    logits = torch.randn(256, 20, generator=g)
    labels = torch.randint(0, 20, (256,), generator=g)
    top = logits.topk(5, 1).indices
    top1 = 100.0 * (top[:, 0] == labels).double().mean().item()
    top5 = 100.0 * (top == labels[:, None]).any(1).double().mean().item()

    a = torch.rand(2, 3, 32, 40, generator=g, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(a.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    mse = ((a - b) ** 2).flatten(1).mean(1)
    psnr = (10 * torch.log10(1.0 / mse)).mean().item()
    ssim = ssim_ref(a.numpy(), b.numpy())

    mix = torch.randn(64, 64, generator=g, dtype=torch.float64)
    f1 = torch.randn(500, 64, generator=g, dtype=torch.float64) @ mix
    f2 = torch.randn(500, 64, generator=g, dtype=torch.float64) @ mix * 1.1 + 0.3
    f3 = torch.randn(40, 64, generator=g, dtype=torch.float64)  # N < D: singular covariance
    f4 = torch.randn(40, 64, generator=g, dtype=torch.float64) + 0.5
    m1, s1 = stats(f1.numpy())
    m2, s2 = stats(f2.numpy())
    m3, s3 = stats(f3.numpy())
    m4, s4 = stats(f4.numpy())
    fid = float(calculate_frechet_distance(m1, s1, m2, s2))
    fid_singular = float(calculate_frechet_distance(m3, s3, m4, s4))

    probs = torch.softmax(torch.randn(1000, 50, generator=g, dtype=torch.float64) * 3, 1)
    is_mean, is_std = inception_score(probs.numpy())

    save_file({"sim": sim, "txt2img": txt2img, "logits": logits, "labels": labels, "a": a, "b": b, "f1": f1,
               "f2": f2, "f3": f3, "f4": f4, "probs": probs}, f"{out}/inputs.safetensors")
    with open(f"{out}/expected.json", "w") as f:
        json.dump({"i2t": tr, "t2i": ir, "top1": top1, "top5": top5, "psnr": psnr, "ssim": ssim, "fid": fid,
                   "fid_singular": fid_singular, "mu1": m1.tolist(), "is_mean": is_mean, "is_std": is_std}, f)


if __name__ == "__main__":
    main(sys.argv[1])
