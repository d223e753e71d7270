"""ONNX Runtime latency of each quantized student next to its float file, side by side.
Usage: bench_quantized_latency.py [RUN_DIR...] [--rounds R] [--threads T] [--spinning]
Each RUN_DIR is a `compress` output folder holding student.onnx and one quantized file
student.w<W>a<A>.onnx (default: every out/quantize_*/ that has both). Both files
run in ONNX Runtime (CPU, all graph optimizations, one session each, intra-op threads: --threads,
default the CPU count; worker threads sleep between runs as in `compress`'s own timing unless
--spinning)
at batch 1 and 32 on the same random input. Rounds alternate the order of the two models so drift
in machine load hits both; each round takes the median of several runs per model, and the table
reports the median over rounds of each model's time and of the per-round ratio float / quantized.
"""
import argparse
import os
import statistics
from pathlib import Path

import numpy as np
import onnxruntime as ort
from ort_timing import compare, session

# (batch, runs per model per round)
BATCHES = [(1, 1000), (32, 60)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--spinning", action="store_true", help="let idle worker threads spin (ONNX Runtime's default)")
    a = ap.parse_args()
    threads = a.threads
    runs = a.runs or sorted({str(p.parent) for p in Path("out").glob("quantize_*/student.w*a*.onnx")})
    spin = "spinning" if a.spinning else "no spinning"
    print(f"ONNX Runtime {ort.__version__}, CPU, {threads} intra-op threads ({spin}), {a.rounds} interleaved rounds\n")
    print("| run | file bytes float → quantized | batch | float ms | quantized ms | speedup float/quantized, median (min–max) |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        run = Path(run)
        quantized = sorted(run.glob("student.w*a*.onnx"))
        if len(quantized) != 1 or not (run / "student.onnx").is_file():
            raise SystemExit(f"{run}: expected student.onnx and one student.w<W>a<A>.onnx, found {[p.name for p in quantized]}")
        files = {"float": run / "student.onnx", "quantized": quantized[0]}
        sessions = {k: session(p, threads, a.spinning) for k, p in files.items()}
        shape = [d if isinstance(d, int) else 1 for d in sessions["float"].get_inputs()[0].shape]
        sizes = f"{files['float'].stat().st_size:,} → {files['quantized'].stat().st_size:,}"
        for batch, runs in BATCHES:
            x = np.random.default_rng(0).standard_normal([batch] + shape[1:], dtype=np.float32)
            medians, ratios = compare(sessions, x, a.rounds, runs, warmup=5)
            f_ms, q_ms = 1e3 * medians["float"], 1e3 * medians["quantized"]
            print(f"| {run.name} | {sizes} | {batch} | {f_ms:.3f} | {q_ms:.3f} | "
                  f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |", flush=True)


if __name__ == "__main__":
    main()
