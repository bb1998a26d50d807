"""vector-quantize-pytorch 1.32.0 `VectorQuantize` oracle for janus::VectorQuantizer (EMA mode, training).

usage: vq_parity.py OUT_DIR -> OUT_DIR/{euclid,cosine}.safetensors with
  embed (codebook before the step), x, quantize, codes, loss, grad_x (d(sum(quantize * gw) + loss)/dx with gw),
  embed_after, cluster_size_after, embed_avg_after.
"""
import os
import sys

import torch
from safetensors.torch import save_file
from vector_quantize_pytorch import VectorQuantize


def case(cosine, seed):
    torch.manual_seed(seed)
    dim, K = 8, 64
    vq = VectorQuantize(dim=dim, codebook_size=K, decay=0.9, eps=1e-5, commitment_weight=0.25, use_cosine_sim=cosine,
                        rotation_trick=False, kmeans_init=False, threshold_ema_dead_code=0)
    vq.train()
    embed = vq._codebook.embed.detach().clone()[0]
    x = torch.randn(3, 20, dim, requires_grad=True)
    gw = torch.randn(3, 20, dim)
    quantize, codes, loss = vq(x)
    ((quantize * gw).sum() + loss).backward()
    return {
        "embed": embed.contiguous(),
        "x": x.detach().contiguous(),
        "gw": gw,
        "quantize": quantize.detach().contiguous(),
        "codes": codes.long().contiguous(),
        "loss": loss.detach().reshape(()),
        "grad_x": x.grad.contiguous(),
        "embed_after": vq._codebook.embed.detach()[0].contiguous(),
        "cluster_size_after": vq._codebook.cluster_size.detach()[0].contiguous(),
        "embed_avg_after": vq._codebook.embed_avg.detach()[0].contiguous(),
    }


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    save_file(case(False, 7), os.path.join(out, "euclid.safetensors"))
    save_file(case(True, 11), os.path.join(out, "cosine.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
