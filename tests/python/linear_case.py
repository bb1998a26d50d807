"""Writes a torch.nn.Linear / timm-style Mlp case for `janus_module run`: weights, inputs and PyTorch's outputs.

usage: linear_case.py OUT_DIR            -> weights.safetensors inputs.safetensors expected.safetensors
       linear_case.py OUT_DIR --check W  -> loads janus-initialised weights W into torch and writes expected_init
"""
import os
import sys

import torch
from safetensors.torch import load_file, save_file


def make(in_f=7, hidden=11, out_f=5):
    torch.manual_seed(1234)
    lin = torch.nn.Linear(in_f, out_f)
    mlp = torch.nn.Sequential()
    mlp.fc1 = torch.nn.Linear(in_f, hidden)
    mlp.act = torch.nn.GELU()
    mlp.fc2 = torch.nn.Linear(hidden, out_f)
    return lin, mlp


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    lin, mlp = make()
    x = torch.randn(3, 4, 7)
    save_file({"x": x}, os.path.join(out, "inputs.safetensors"))
    if len(sys.argv) > 3 and sys.argv[2] == "--check":
        lin.load_state_dict(load_file(sys.argv[3]))
        with torch.no_grad():
            save_file({"y": lin(x)}, os.path.join(out, "expected_init.safetensors"))
        return 0
    save_file({k: v.contiguous() for k, v in lin.state_dict().items()}, os.path.join(out, "linear_weights.safetensors"))
    save_file({k: v.contiguous() for k, v in mlp.state_dict().items()}, os.path.join(out, "mlp_weights.safetensors"))
    with torch.no_grad():
        save_file({"y": lin(x)}, os.path.join(out, "linear_expected.safetensors"))
        save_file({"y": mlp.fc2(mlp.act(mlp.fc1(x)))}, os.path.join(out, "mlp_expected.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
