"""Writes reformer-pytorch 1.4.4 LSHAttention cases (inputs, injected rotations, outputs) for the C++ parity test.

usage: lsh_reformer_case.py OUT_DIR
One file per case: OUT_DIR/lsh_<causal>_<n_hashes>_<masked>.safetensors with qk, v [B, H, L, d], rotations
[d, n_hashes, n_buckets/2], key_mask [B, L] (uint8) and out [B, H, L, d]. reformer-pytorch sees batch B*H.
"""
import sys

import torch
from safetensors.torch import save_file
import reformer_pytorch.reformer_pytorch as rp


def case(out_dir, causal, n_hashes, masked, seed):
    g = torch.Generator().manual_seed(seed)
    B, H, L, d, bucket = 2, 2, 256, 16, 32
    n_buckets = L // bucket
    qk = torch.randn(B, H, L, d, generator=g)
    v = torch.randn(B, H, L, d, generator=g)
    rot = torch.randn(d, n_hashes, n_buckets // 2, generator=g)
    key_mask = torch.ones(B, L, dtype=torch.bool)
    if masked:
        key_mask[0, L - 37:] = False
        key_mask[1, 5:9] = False
    attn = rp.LSHAttention(bucket_size=bucket, n_hashes=n_hashes, causal=causal).eval()
    real_randn = torch.randn
    # Inject the rotations: hash_vectors draws torch.randn((1, d, n_hashes, n_buckets/2)).
    rp.torch.randn = lambda *a, **k: rot.unsqueeze(0).clone()
    try:
        out, _, _ = attn(qk.reshape(B * H, L, d), v.reshape(B * H, L, d),
                         input_mask=key_mask.repeat_interleave(H, 0) if masked else None)
    finally:
        rp.torch.randn = real_randn
    name = f"{out_dir}/lsh_{int(causal)}_{n_hashes}_{int(masked)}.safetensors"
    save_file({"qk": qk, "v": v, "rotations": rot, "key_mask": key_mask.to(torch.uint8),
               "out": out.reshape(B, H, L, d).contiguous()}, name)


def main():
    out_dir = sys.argv[1]
    seed = 0
    for causal in (False, True):
        for n_hashes in (1, 4):
            for masked in (False, True):
                case(out_dir, causal, n_hashes, masked, seed)
                seed += 1
    print("ok")


if __name__ == "__main__":
    main()
