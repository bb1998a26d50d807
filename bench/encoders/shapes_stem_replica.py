"""A plain-PyTorch replica of the quickstart's tiny encoders trained with the contrastive loss alone on Shapes.

It answers one question quickly: which vision stem lets a small model retrieve Shapes captions (held-out R@1 with
issue 12's rule: a retrieved caption whose text equals a ground-truth caption is a hit). Same shapes as the C++
`tiny` flavour: ViT dim 128, depth 4, heads 4, patch 8 at 32 px, class token, mean-pooled embeddings; a 2-layer
text transformer (word-level vocabulary here, not SentencePiece); AdamW 1e-3, wd 0.05, 30 warm-up steps, cosine.

  janus_data shapes --out /tmp/shapes --train 2000 --val 200 --size 32 --seed 0
  python bench/encoders/shapes_stem_replica.py --data /tmp/shapes --steps 400 --batch 128 --stem stem2   # conv stem
  python bench/encoders/shapes_stem_replica.py --data /tmp/shapes --steps 400 --batch 128                # patch stem

Results (2026-12-05, 2-core machine) are in docs/encoders.md ("stem"); the C++ stem is `--stem stem2 --snorm bn`.
"""
import json, math, os, sys, time, argparse
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image

p = argparse.ArgumentParser()
p.add_argument("--data", required=True, help="a janus_data shapes directory")
p.add_argument("--steps", type=int, default=300)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--patch", type=int, default=8)
p.add_argument("--dim", type=int, default=128)
p.add_argument("--vdepth", type=int, default=4)
p.add_argument("--tdepth", type=int, default=2)
p.add_argument("--pool", default="mean")
p.add_argument("--vision", default="vit")
p.add_argument("--norm", default="pre")
p.add_argument("--stem", default="patch")
p.add_argument("--snorm", default="bn")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--init", default="torch", help="torch: PyTorch defaults; normal02: N(0, 0.02) Linear/Embedding weights "
               "(the C++ encoders' timm-like init); emb02: only the text token embedding N(0, 0.02)")
p.add_argument("--clip", type=float, default=0.0, help="global gradient-norm clip (0: none; the C++ default is 1)")
p.add_argument("--min-lr", type=float, default=0.0, help="cosine floor as a fraction of lr (the C++ default is 0.1)")
a = p.parse_args()
torch.manual_seed(0)
torch.set_num_threads(a.threads)


def load(split):
    cj = json.load(open(os.path.join(a.data, f"captions_{split}.json")))
    ids = [im["id"] for im in cj["images"]]
    files = {im["id"]: im["file_name"] for im in cj["images"]}
    imgs = np.stack([np.array(Image.open(os.path.join(a.data, files[i])).convert("RGB")) for i in ids])
    caps = {i: [] for i in ids}
    for an in cj["annotations"]:
        caps[an["image_id"]].append(an["caption"].lower())
    return ids, torch.tensor(imgs).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5), [caps[i] for i in ids]


tr_ids, tr_img, tr_caps = load("train")
va_ids, va_img, va_caps = load("val")
vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2}
for cs in tr_caps + va_caps:
    for c in cs:
        for w in c.replace(",", " ,").replace(":", " :").split():
            vocab.setdefault(w, len(vocab))
L = 24


def tok(c):
    ids = [1] + [vocab[w] for w in c.replace(",", " ,").replace(":", " :").split()][: L - 2] + [2]
    return ids + [0] * (L - len(ids))


class Block(nn.Module):
    def __init__(s, d, h, pre=True):
        super().__init__()
        s.pre = pre
        s.n1, s.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        s.att = nn.MultiheadAttention(d, h, batch_first=True)
        s.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(s, x, kpm=None):
        if s.pre:
            y = s.n1(x)
            x = x + s.att(y, y, y, key_padding_mask=kpm, need_weights=False)[0]
            return x + s.mlp(s.n2(x))
        x = s.n1(x + s.att(x, x, x, key_padding_mask=kpm, need_weights=False)[0])
        return s.n2(x + s.mlp(x))


def stem(kind, d):
    def cb(i, o, st):
        nm = nn.BatchNorm2d(o) if a.snorm == "bn" else nn.GroupNorm(8, o) if a.snorm == "gn" else nn.Identity()
        return [nn.Conv2d(i, o, 3, st, 1, bias=a.snorm == "none"), nm, nn.ReLU()]
    if kind == "stem1":  # 3 stride-2 convs -> /8
        L = cb(3, 32, 2) + cb(32, 64, 2) + cb(64, 128, 2)
    elif kind == "stem2":  # stride-1 conv first, then /8
        L = cb(3, 32, 1) + cb(32, 64, 2) + cb(64, 128, 2) + cb(128, 128, 2)
    elif kind == "stem2l":
        L = cb(3, 16, 1) + cb(16, 32, 2) + cb(32, 64, 2) + cb(64, 128, 2)
    elif kind == "stem4":  # /4 -> 8x8 tokens
        L = cb(3, 32, 2) + cb(32, 64, 2)
    else:
        raise SystemExit(kind)
    return nn.Sequential(*L, nn.Conv2d(L[-3].out_channels, d, 1))


class ViT(nn.Module):
    def __init__(s, d, depth, patch, size=32):
        super().__init__()
        s.pe = nn.Conv2d(3, d, patch, patch) if a.stem == "patch" else stem(a.stem, d)
        if a.stem == "stem4": patch = 4
        n = (size // patch) ** 2
        s.cls = nn.Parameter(torch.zeros(1, 1, d))
        s.pos = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
        s.blocks = nn.ModuleList([Block(d, 4) for _ in range(depth)])
        s.norm = nn.LayerNorm(d)

    def forward(s, x):
        x = s.pe(x).flatten(2).transpose(1, 2)
        x = torch.cat([s.cls.expand(x.size(0), -1, -1), x], 1) + s.pos
        for b in s.blocks:
            x = b(x)
        x = s.norm(x)
        return x[:, 1:].mean(1) if a.pool == "mean" else x[:, 0]


class CNN(nn.Module):
    def __init__(s, d):
        super().__init__()
        c = 64
        s.net = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * c * 64, d))

    def forward(s, x):
        return s.net(x)


class Text(nn.Module):
    def __init__(s, V, d, depth):
        super().__init__()
        s.emb = nn.Embedding(V, d)
        s.pos = nn.Parameter(torch.randn(1, L, d) * 0.02)
        s.blocks = nn.ModuleList([Block(d, 4, a.norm == "pre") for _ in range(depth)])
        s.norm = nn.LayerNorm(d)

    def forward(s, ids):
        m = ids != 0
        x = s.emb(ids) + s.pos
        for b in s.blocks:
            x = b(x, ~m)
        x = s.norm(x)
        mf = m.float().unsqueeze(-1)
        return (x * mf).sum(1) / mf.sum(1) if a.pool == "mean" else x[:, 0]


d = a.dim
vis = ViT(d, a.vdepth, a.patch) if a.vision == "vit" else CNN(d)
txt = Text(len(vocab), d, a.tdepth)
vp, tp = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
ls = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
if a.init in ("normal02", "emb02"):
    with torch.no_grad():
        for m in list(vis.modules()) + list(txt.modules()) + [vp, tp]:
            if isinstance(m, nn.Embedding) or (a.init == "normal02" and isinstance(m, nn.Linear)):
                m.weight.normal_(0, 0.02)
                if getattr(m, "bias", None) is not None: m.bias.zero_()
            if a.init == "normal02" and isinstance(m, nn.MultiheadAttention):
                m.in_proj_weight.normal_(0, 0.02); m.in_proj_bias.zero_()
params = list(vis.parameters()) + list(txt.parameters()) + list(vp.parameters()) + list(tp.parameters()) + [ls]
print("params", sum(p.numel() for p in params))
opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.05)
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: min(1, (s + 1) / 30) * (a.min_lr + (1 - a.min_lr) * 0.5 * (1 + math.cos(math.pi * min(1, s / a.steps)))))


def embed_i(x):
    return F.normalize(vp(vis(x)), dim=-1)


def embed_t(ids):
    return F.normalize(tp(txt(ids)), dim=-1)


def evaluate(va_img=va_img, va_caps=va_caps):
    with torch.no_grad():
        ie = embed_i(va_img)
        texts = [c for cs in va_caps for c in cs]
        owner = [i for i, cs in enumerate(va_caps) for _ in cs]
        te = embed_t(torch.tensor([tok(c) for c in texts]))
        sim = ie @ te.t()
        imgset = [set(cs) for cs in va_caps]
        i2t = sum(texts[j] in imgset[i] for i, j in enumerate(sim.argmax(1).tolist())) / len(va_caps)
        t2i = sum(texts[k] in imgset[i] for k, i in enumerate(sim.argmax(0).tolist())) / len(texts)
        return i2t, t2i


g = torch.Generator().manual_seed(0)
t0 = time.time()
for step in range(a.steps):
    idx = torch.randint(0, len(tr_ids), (a.batch,), generator=g)
    x = tr_img[idx]
    ids = torch.tensor([tok(tr_caps[i][torch.randint(0, len(tr_caps[i]), (1,), generator=g).item()]) for i in idx])
    ie, te = embed_i(x), embed_t(ids)
    logits = ls.clamp(max=math.log(100)).exp() * ie @ te.t()
    # duplicates in batch: same image index -> also positives
    same = (idx[:, None] == idx[None, :]).float()
    tgt = same / same.sum(1, keepdim=True)
    loss = 0.5 * (torch.sum(-tgt * logits.log_softmax(1), 1).mean() + torch.sum(-tgt * logits.t().log_softmax(1), 1).mean())
    opt.zero_grad()
    loss.backward()
    if a.clip > 0: torch.nn.utils.clip_grad_norm_(params, a.clip)
    opt.step()
    sched.step()
    if (step + 1) % max(1, a.steps // 6) == 0 or step + 1 == a.steps:
        r, rt = evaluate(), evaluate(tr_img[:200], tr_caps[:200])
        print(f"step {step+1} loss {loss.item():.3f} held-out R@1 i2t {r[0]:.3f} t2i {r[1]:.3f} "
              f"(first 200 training images {rt[0]:.3f} / {rt[1]:.3f}) {time.time()-t0:.0f}s", flush=True)
