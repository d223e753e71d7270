"""Where an ONNX file's time goes in ONNX Runtime: the median kernel time of every node of the
optimized graph (CPU, all graph optimizations), from ONNX Runtime's own profiler, for each thread
count asked for, side by side; then the sum of the medians per op type.

Usage: profile_ort.py MODEL.onnx [--batch 32] [--threads 1 2] [--runs 40] [--spinning]

Worker threads sleep between kernels as in `compress`'s own timing unless --spinning. The input
is random (shape from the model, free dimensions 1, batch from --batch). The profiler's own
overhead makes the sums larger than a plain run's time; use them to compare nodes, not files.
"""
import argparse
import collections
import json
import os
import statistics
import tempfile

import numpy as np
import onnxruntime as ort


def profile(path, batch, threads, runs, spinning):
    """Median kernel microseconds per node name, and each node's op type."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "profile")
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [batch] + [d if isinstance(d, int) else 1 for d in inp.shape[1:]]
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    for _ in range(runs):
        sess.run(None, {inp.name: x})
    trace = sess.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    times, ops = collections.defaultdict(list), {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            times[node].append(e["dur"])
            ops[node] = e["args"]["op_name"]
    return {n: statistics.median(v) for n, v in times.items()}, ops


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--spinning", action="store_true")
    a = ap.parse_args()
    results = [profile(a.model, a.batch, t, a.runs, a.spinning) for t in a.threads]
    ops = results[0][1]
    cols = " | ".join(f"{t} thread(s) µs" for t in a.threads)
    print(f"ONNX Runtime {ort.__version__}, {a.model}, batch {a.batch}, median of {a.runs} runs per node\n")
    print(f"| node | op | {cols} |\n|---|---|" + "---|" * len(a.threads))
    for node in results[0][0]:
        row = " | ".join(f"{r[0].get(node, float('nan')):.0f}" for r in results)
        print(f"| {node} | {ops[node]} | {row} |")
    print(f"\n| op | {cols} |\n|---|" + "---|" * len(a.threads))
    for op in sorted(set(ops.values()), key=lambda o: -sum(v for n, v in results[0][0].items() if ops[n] == o)):
        row = " | ".join(f"{sum(v for n, v in r[0].items() if ops.get(n) == op):.0f}" for r in results)
        print(f"| {op} | {row} |")
    total = " | ".join(f"{sum(r[0].values()):.0f}" for r in results)
    print(f"| all kernels | {total} |")


if __name__ == "__main__":
    main()
