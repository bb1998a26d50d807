"""Writes timm VisionTransformer parity cases for the VisionEncoder test (random init, eval mode, fp32).

usage: timm_vit_case.py OUT_DIR
For each case NAME: NAME_weights.safetensors (timm state dict), NAME_io.safetensors (images, tokens, pooled),
NAME.json (the janus VisionEncoder options).
"""
import json
import os
import sys

import timm
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

CASES = {
    # class token, token pooling, qkv bias
    "cls": dict(timm=dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, class_token=True,
                          global_pool="token", qkv_bias=True),
                janus=dict(image_size=32, patch_size=8, dim=64, depth=2, heads=4, class_token=True,
                           global_pool="token", qkv_bias=True),
                image=(3, 32, 32)),
    # no class token, average pooling (timm turns on fc_norm), no qkv bias, mlp_ratio 2
    "avg": dict(timm=dict(img_size=32, patch_size=8, embed_dim=48, depth=3, num_heads=3, class_token=False,
                          global_pool="avg", qkv_bias=False, mlp_ratio=2.0),
                janus=dict(image_size=32, patch_size=8, dim=48, depth=3, heads=3, class_token=False,
                           global_pool="avg", qkv_bias=False, mlp_ratio=2.0),
                image=(3, 32, 32)),
    # trained at 32x32, run at 48x40: pos_embed resampled bicubic (timm dynamic_img_size)
    "resize": dict(timm=dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, class_token=True,
                             global_pool="token", dynamic_img_size=True),
                   janus=dict(image_size=32, patch_size=8, dim=64, depth=2, heads=4, class_token=True,
                              global_pool="token"),
                   image=(3, 48, 40)),
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for i, (name, case) in enumerate(CASES.items()):
        torch.manual_seed(100 + i)
        model = VisionTransformer(num_classes=0, **case["timm"]).eval()
        with torch.no_grad():  # perturb everything so LayerNorm affine and biases are exercised too
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        images = torch.randn(2, *case["image"])
        with torch.no_grad():
            tokens = model.forward_features(images)
            pooled = model.forward_head(tokens, pre_logits=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  os.path.join(out, f"{name}_weights.safetensors"))
        save_file({"images": images, "tokens": tokens.contiguous(), "pooled": pooled.contiguous()},
                  os.path.join(out, f"{name}_io.safetensors"))
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump(case["janus"], f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
