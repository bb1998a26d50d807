"""torchvision inception_v3 parity case: random weights (init_weights=True, random BN statistics), inputs and
torchvision's eval-mode logits and 2048-d pool features.

usage: eval_inception_case.py OUT_DIR AUX(0|1) TRANSFORM_INPUT(0|1)
       -> OUT_DIR/weights.safetensors (torchvision key names), OUT_DIR/io.safetensors (x, logits, pool)
"""
import sys

import torch
from safetensors.torch import save_file
from torchvision.models import inception_v3


def main(out, aux, transform):
    torch.manual_seed(11)
    m = inception_v3(weights=None, aux_logits=aux, transform_input=transform, init_weights=True, num_classes=1000)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    m.eval()
    x = torch.randn(2, 3, 150, 150)
    feats = {}
    m.avgpool.register_forward_hook(lambda mod, i, o: feats.__setitem__("pool", o.flatten(1)))
    with torch.no_grad():
        logits = m(x)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, f"{out}/weights.safetensors")
    save_file({"x": x, "logits": logits, "pool": feats["pool"]}, f"{out}/io.safetensors")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1")
