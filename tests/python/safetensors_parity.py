"""Parity with the reference `safetensors` package.

write OUT.safetensors   -- writes the reference tensor set with safetensors.torch.save_file
check IN.safetensors    -- reads a file written by libjanus and compares with the reference set (exit 1 on mismatch)
"""
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def reference():
    base = torch.arange(24, dtype=torch.float64).reshape(2, 3, 4) / 7.0 - 1.5
    return {
        "f64": base.clone(),
        "f32": base.float(),
        "f16": base.half(),
        "bf16": base.bfloat16(),
        "i64": (base * 1000).long(),
        "i32": (base * 1000).int(),
        "i16": (base * 100).short(),
        "i8": (base * 10).to(torch.int8),
        "u8": (base * 10 + 20).to(torch.uint8),
        "bool": base > 0,
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 5),
    }


def main():
    mode, path = sys.argv[1], sys.argv[2]
    ref = reference()
    if mode == "write":
        save_file(ref, path, metadata={"source": "python", "format": "pt"})
        return 0
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        if meta != {"source": "janus", "note": "ünïcode ok"}:
            print("metadata mismatch", meta)
            return 1
        keys = set(f.keys())
        if keys != set(ref):
            print("keys mismatch", sorted(keys))
            return 1
        for k, v in ref.items():
            got = f.get_tensor(k)
            if got.dtype != v.dtype or got.shape != v.shape or not torch.equal(got, v):
                print("tensor mismatch", k, got.dtype, got.shape)
                return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
