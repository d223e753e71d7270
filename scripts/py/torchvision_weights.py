"""Writes torchvision classifiers' random weights, an input and their logits to .npz files, so
tests/torchvision_parity.rs can load them into our graph builders by name and compare.

Usage: torchvision_weights.py OUT_DIR. BatchNorm running statistics are randomized too, so the
comparison exercises them (fresh ones are the identity)."""
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision.models as tvm

MODELS = {
    "resnet18": tvm.resnet18,
    "resnet34": tvm.resnet34,
    "mobilenetv2_imagenet": tvm.mobilenet_v2,
    "mobilenetv3_small": tvm.mobilenet_v3_small,
    "mobilenetv3_large": tvm.mobilenet_v3_large,
}


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for ours, make in MODELS.items():
        model = make(num_classes=10).eval()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_(0.0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.1)
            x = torch.randn(2, 3, 64, 64)
            logits = model(x)
        arrays = {k: v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        arrays["__input__"] = x.numpy()
        arrays["__logits__"] = logits.numpy()
        arrays["__param_count__"] = np.array([sum(p.numel() for p in model.parameters())], dtype=np.int64)
        np.savez(out / f"{ours}.npz", **arrays)
        print(f"{ours}: {arrays['__param_count__'][0]} parameters")


if __name__ == "__main__":
    main()
