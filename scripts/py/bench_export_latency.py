"""ONNX Runtime latency of our exported zoo students against the same architectures exported
from torchvision by torch.onnx, side by side in one process.

Usage: bench_export_latency.py COMPRESS_BIN OUT_DIR [--rounds R]

For each pair it writes ours with `compress zoo ARCH --classes 1000 --export` (BatchNorm folded, as
a trained student is exported) and torchvision's with the TorchScript exporter at the same opset
(eval mode, which folds BatchNorm too), both with a dynamic batch. It then runs both in ONNX
Runtime (CPU, all graph optimizations, one session each) at batch 1 and 32 on the same random
input. Rounds alternate the two models so drift in machine load hits both; each round takes the
median of several runs per model, and the table reports the median over rounds of each model's
time and of the per-round ratio ours / torchvision.
"""
import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
import torchvision.models as tvm
from ort_timing import compare, session

PAIRS = [("mobilenetv2_imagenet", "mobilenet_v2", tvm.mobilenet_v2), ("resnet18", "resnet18", tvm.resnet18)]
OPSET = 13
SIZE = 224
# (batch, runs per model per round)
BATCHES = [(1, 100), (32, 5)]


def export_ours(binary, arch, path):
    subprocess.run([binary, "zoo", arch, "--classes", "1000", "--opset", str(OPSET), "--export", str(path), "--overwrite"],
                   check=True, stdout=subprocess.DEVNULL)


def export_torchvision(make, path):
    model = make(num_classes=1000).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    torch.onnx.export(model, (x,), str(path), opset_version=OPSET, dynamo=False, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def op_histogram(path):
    """Node counts by op type, to show the two files describe the same computation."""
    counts = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("out")
    ap.add_argument("--rounds", type=int, default=9)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = os.cpu_count()
    rows = []
    for ours_arch, tv_name, make in PAIRS:
        torch.manual_seed(0)
        ours_path, tv_path = out / f"ours_{ours_arch}.onnx", out / f"torchvision_{tv_name}.onnx"
        export_ours(a.binary, ours_arch, ours_path)
        export_torchvision(make, tv_path)
        print(json.dumps({"arch": ours_arch, "ops_ours": op_histogram(ours_path), "ops_torchvision": op_histogram(tv_path)}), flush=True)
        sessions = {"ours": session(ours_path, threads), "torchvision": session(tv_path, threads)}
        for batch, runs in BATCHES:
            x = np.random.default_rng(0).standard_normal((batch, 3, SIZE, SIZE), dtype=np.float32)
            medians, ratios = compare(sessions, x, a.rounds, runs, warmup=3 if batch == 1 else 1)
            row = {
                "arch": ours_arch, "torchvision": tv_name, "batch": batch, "rounds": a.rounds, "runs_per_round": runs,
                "ours_ms": 1e3 * medians["ours"],
                "torchvision_ms": 1e3 * medians["torchvision"],
                "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(f"ONNX Runtime {ort.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{threads} threads, {SIZE}x{SIZE}, 1000 classes, opset {OPSET}")
    print()
    print("| model | batch | ours (ms) | torchvision export (ms) | ours / torchvision, median (min–max over rounds) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} vs `{r['torchvision']}` | {r['batch']} | {r['ours_ms']:.2f} | {r['torchvision_ms']:.2f} | "
              f"{r['ratio_median']:.3f} ({r['ratio_min']:.3f}–{r['ratio_max']:.3f}) |")
    (out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
