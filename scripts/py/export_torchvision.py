"""Exports torchvision classifiers with random weights through both PyTorch ONNX exporters.

Used by scripts/verify-imports to check that `compress` runs what real exporters produce.
Writes <out>/<model>.<exporter>.onnx (and .onnx.data where the exporter uses external data)
plus <out>/manifest.json. Exporters: ts13 and ts17 (TorchScript-based, opset 13 and 17) and
dynamo (torch.export-based, its default opset). Every file has a dynamic batch dimension.
"""
import json
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path

import torch
import torchvision.models as tvm
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.vision_transformer import VisionTransformer


def small_convnext():
    return ConvNeXt([CNBlockConfig(32, 64, 2), CNBlockConfig(64, 128, 2), CNBlockConfig(128, None, 2)], num_classes=10)


def small_vit():
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10)


def small_head(model, features):
    """VGG and AlexNet carry 4096-wide classifiers (hundreds of MB of random weights); a small
    head keeps the families' convolutional patterns and the export fast."""
    model.classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    return model


MODELS = {
    "resnet18": (lambda: tvm.resnet18(num_classes=10), 64),
    "mobilenet_v2": (lambda: tvm.mobilenet_v2(num_classes=10), 64),
    "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(num_classes=10), 64),
    "shufflenet_v2_x0_5": (lambda: tvm.shufflenet_v2_x0_5(num_classes=10), 64),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=10), 64),
    "regnet_y_400mf": (lambda: tvm.regnet_y_400mf(num_classes=10), 64),
    "squeezenet1_1": (lambda: tvm.squeezenet1_1(num_classes=10), 64),
    "convnext_small": (small_convnext, 64),
    "vit_small": (small_vit, 32),
    "densenet121": (lambda: tvm.densenet121(num_classes=10), 64),
    "googlenet": (lambda: tvm.googlenet(num_classes=10, aux_logits=False, init_weights=True), 64),
    "inception_v3": (lambda: tvm.inception_v3(num_classes=10, aux_logits=False, init_weights=True), 96),
    "vgg11_bn": (lambda: small_head(tvm.vgg11_bn(num_classes=10), 512 * 7 * 7), 224),
    "alexnet": (lambda: small_head(tvm.alexnet(num_classes=10), 256 * 6 * 6), 224),
}


class manual_attention:
    """Replaces scaled_dot_product_attention by its textbook form while exporting: the
    TorchScript exporter has no opset-13 symbolic for it, and this is how such models reach
    opset 13 in practice."""

    def __enter__(self):
        self.saved = torch.nn.functional.scaled_dot_product_attention

        def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
            s = scale if scale is not None else q.shape[-1] ** -0.5
            return torch.softmax(q @ k.transpose(-2, -1) * s, dim=-1) @ v

        torch.nn.functional.scaled_dot_product_attention = sdpa

    def __exit__(self, *exc):
        torch.nn.functional.scaled_dot_product_attention = self.saved


def randomize_zero_parameters(model):
    """Zero-initialized weights (ViT's head, for one) would make every logit 0 and the
    comparison meaningless; give them small random values."""
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0.0, 0.02)


def export(model, size, path, exporter):
    x = torch.randn(2, 3, size, size)
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["input"], output_names=["logits"],
                          dynamic_shapes={"x": {0: batch}})
    else:
        opset = int(exporter[2:])
        with manual_attention() if opset < 14 else nullcontext():
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def main():
    out = Path(sys.argv[1])
    only = set(sys.argv[2:])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    manifest = []
    for name, (make, size) in MODELS.items():
        if only and name not in only:
            continue
        model = make().eval()
        randomize_zero_parameters(model)
        for exporter in ("ts13", "ts17", "dynamo"):
            path = out / f"{name}.{exporter}.onnx"
            entry = {"model": name, "exporter": exporter, "file": path.name, "image_size": size}
            try:
                export(model, size, path, exporter)
                entry["ok"] = True
            except Exception as e:  # report and continue: one exporter failing must not hide the rest
                entry["ok"] = False
                entry["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                traceback.print_exc(limit=1)
            manifest.append(entry)
            print(f"{name:22s} {exporter:7s} {'ok' if entry['ok'] else entry['error']}", flush=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
