"""One training epoch of a distillation job in PyTorch eager, written as a PyTorch user would:
the ONNX teachers converted with onnx2torch, the CIFAR ResNet-20 student as an nn.Module, the
training images decoded once into a uint8 tensor, random crop (padding 4) and horizontal flip
applied to each batch on tensors, AVER (CE + the mean of the teachers' KD losses, T = 4), SGD
with Nesterov momentum. With --channels-last the student and the teachers are moved to
channels-last memory format (the tuning PyTorch's performance guide recommends for CPU and
tensor-core convolutions). Prints one JSON line: {"images_per_second", "seconds", "steps"}.

On CUDA (--device cuda) the uint8 images are held on the GPU and augmented there, the
timing ends with a synchronize, and TF32 stays at PyTorch's defaults.

Usage: bench_train_step.py SHARED_DIR --images N --batch B --threads T [--channels-last]
       [--device cpu|cuda]
(scripts/bench-train-step runs it interleaved with compress on the same job)."""
import argparse
import json
import os
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx2torch import convert
from PIL import Image

# (file, layout, scale, mean, std, output) as ../shared/onnx/README.md gives them: the three
# shared teachers onnx2torch converts into batch-independent modules (it keeps sri_resnet_a's
# batch of 1 and has no converter for the ViT's Slice-1).
TEACHERS = [
    ("vnncomp21_cifar10_resnet_4b.onnx", "nchw", 1 / 255, (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616), "logits"),
    ("vnncomp22_cifar_biasfield_base.onnx", "nchw", 1 / 255, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), "logits"),
    ("emclab_squeezenet_cifar10_tf2onnx.onnx", "nhwc", 1 / 256, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "probabilities"),
]
STUDENT_NORM = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """The CIFAR ResNet of He et al. (RepDistiller's resnet20 for depth 20)."""

    def __init__(self, depth=20, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(n):
                layers.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def load_images(folder, n):
    classes = sorted(os.listdir(folder))
    per_class = (n + len(classes) - 1) // len(classes)
    pixels, labels = [], []
    for label, c in enumerate(classes):
        files = sorted(os.listdir(os.path.join(folder, c)))[:per_class]
        for f in files:
            pixels.append(np.asarray(Image.open(os.path.join(folder, c, f)).convert("RGB")))
            labels.append(label)
    x = torch.from_numpy(np.stack(pixels[:n])).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    return x, torch.tensor(labels[:n])


def augment(batch, gen):
    """Random crop with 4 pixels of zero padding and a horizontal flip, per sample, on tensors."""
    b, _, h, w = batch.shape
    padded = F.pad(batch, (4, 4, 4, 4))
    d = batch.device
    dy = torch.randint(0, 9, (b,), generator=gen).to(d)
    dx = torch.randint(0, 9, (b,), generator=gen).to(d)
    rows = (dy[:, None] + torch.arange(h, device=d)[None, :])[:, None, :, None].expand(b, 3, h, w)
    cols = (dx[:, None] + torch.arange(w, device=d)[None, :])[:, None, None, :].expand(b, 3, h, w)
    out = padded[torch.arange(b, device=d)[:, None, None, None], torch.arange(3, device=d)[None, :, None, None], rows, cols]
    flip = (torch.rand(b, generator=gen) < 0.5).to(d)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def normalize(x_uint8, scale, mean, std, layout="nchw"):
    x = x_uint8.float() * scale
    d = x.device
    x = (x - torch.tensor(mean, device=d).view(1, 3, 1, 1)) / torch.tensor(std, device=d).view(1, 3, 1, 1)
    return x.permute(0, 2, 3, 1) if layout == "nhwc" else x


def teacher_logits(teacher, x):
    m, layout, scale, mean, std, output = teacher
    z = m(normalize(x, scale, mean, std, layout))
    return z.clamp_min(1e-12).log() if output == "probabilities" else z


def main():
    p = argparse.ArgumentParser()
    p.add_argument("shared")
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    dev = torch.device(a.device)
    layout = torch.channels_last if a.channels_last else torch.contiguous_format
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    teachers = []
    for f, *how in TEACHERS:
        m = convert(onnx.load(os.path.join(a.shared, "onnx", f))).eval().to(dev, memory_format=layout)
        for q in m.parameters():
            q.requires_grad_(False)
        teachers.append((m, *how))
    images, labels = load_images(os.path.join(a.shared, "data/cifar10/train"), a.images)
    images, labels = images.to(dev), labels.to(dev)
    student = ResNetCifar(20).to(dev, memory_format=layout)
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)
    t = 4.0
    steps = len(images) // a.batch
    order = torch.randperm(len(images), generator=gen).to(dev)
    student.train()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    for s in range(steps):
        idx = order[s * a.batch:(s + 1) * a.batch]
        x = augment(images[idx], gen)
        y = labels[idx]
        with torch.no_grad():
            zt = [teacher_logits(t_, x) for t_ in teachers]
        zs = student(normalize(x, 1 / 255, *STUDENT_NORM))
        log_ps = F.log_softmax(zs / t, 1)
        kd = torch.stack([F.kl_div(log_ps, F.softmax(z / t, 1), reduction="batchmean") * t * t for z in zt]).mean()
        loss = F.cross_entropy(zs, y) + kd
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync()
    seconds = time.perf_counter() - started
    print(json.dumps({"images_per_second": steps * a.batch / seconds, "seconds": seconds, "steps": steps}))


if __name__ == "__main__":
    main()
