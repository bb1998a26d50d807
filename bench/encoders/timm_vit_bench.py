"""timm side of janus_bench_encoders: times VisionTransformer forward+backward on the weights and images the C++
bench wrote, with the same thread count and iteration scheme, and prints one JSON line.

usage: timm_vit_bench.py DIR THREADS WARMUP ITERS
"""
import json
import sys
import time

import torch
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer


def main():
    d, threads, warmup, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    cfg = json.load(open(f"{d}/config.json"))
    model = VisionTransformer(img_size=cfg["image_size"], patch_size=cfg["patch_size"], embed_dim=cfg["dim"],
                              depth=cfg["depth"], num_heads=cfg["heads"], num_classes=0)
    model.load_state_dict(load_file(f"{d}/weights.safetensors"))
    model.train()  # dropout/drop-path are 0: train mode only matters for autograd bookkeeping
    x = load_file(f"{d}/input.safetensors")["images"]
    times = []
    for i in range(warmup + iters):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        tokens = model.forward_features(x)
        loss = tokens.sin().mean()
        loss.backward()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    print(json.dumps({"times": times, "loss": loss.item(), "pooled_sum": pooled.double().abs().sum().item(),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    sys.exit(main())
