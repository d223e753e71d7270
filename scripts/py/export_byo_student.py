"""Exports torchvision's mobilenet_v2 (10 classes, random weights, 32x32 input) with the
torch.export-based exporter, BatchNormalization kept (not folded), as a bring-your-own student for
recipes/byo_mobilenetv2_cifar10.yaml. Usage: export_byo_student.py OUT.onnx"""
import sys

import torch
import torchvision.models as tvm

torch.manual_seed(0)
model = tvm.mobilenet_v2(num_classes=10).eval()
x = torch.randn(2, 3, 32, 32)
batch = torch.export.Dim("batch", min=1, max=4096)
# optimize=False keeps BatchNormalization as its own op (the optimizer would fold it into the
# convolutions, leaving nothing for training mode to update).
torch.onnx.export(model, (x,), sys.argv[1], dynamo=True, optimize=False, input_names=["input"], output_names=["logits"],
                  dynamic_shapes={"x": {0: batch}})
