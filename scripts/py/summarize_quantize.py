"""Turns the reports of scripts/quantize-acceptance (out/quantize_*/report.json) into the tables of
docs/results/quantization.md: per run, the bit widths, the float student, the quantization-aware
student with teachers (tch fake-quant and the QDQ file in ONNX Runtime) and without, agreement,
size, integer kernels and the in-run latency ratios.
Usage: summarize_quantize.py [RUN_DIR...]
"""
import json
import sys
from pathlib import Path


def pct(v):
    return f"{100 * v:.2f}"


def bits(q):
    """W/A of the inner layers (the first and last are 8 by default), e.g. W4A8."""
    inner = q["layers"][1:-1] or q["layers"]
    w = sorted({l["weight_bits"] for l in inner})
    a = sorted({l["activation_bits"] for l in inner})
    return "W" + "/".join(map(str, w)) + "A" + "/".join(map(str, a))


def student(r):
    """The student's label; a float file written by another run is named by that run."""
    label = r["student"]["student"]
    if label.startswith("onnx ") and "/out/" in label:
        return "float file of " + label.split("/out/")[1].split("/")[0]
    return label


def main():
    runs = [Path(p) for p in sys.argv[1:]] or sorted(p.parent for p in Path("out").glob("quantize_*/report.json"))
    print("| run | student | bits | float top-1 (ORT) | QAT final top-1 in tch: with teachers / labels only | quantized, biases rounded: tch fake-quant / ORT file | agreement tch vs ORT | file bytes float → quantized | layers on integer kernels | speedup b1 / b32 (in run, per thread count) | gates |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        r = json.loads((run / "report.json").read_text())
        q = r.get("quantization")
        if not q:
            continue
        base = q.get("baseline")
        base_top1 = pct(base["final_top1"]) if base else "–"
        by_threads = {}
        for l in q["latency"]:
            by_threads.setdefault(l.get("threads", 2), {})[l["batch"]] = l["speedup"]
        speed = "; ".join(f"{t} thr: " + " / ".join(f"{lat[b]:.2f}×" for b in sorted(lat)) for t, lat in sorted(by_threads.items()))
        print(f"| {run.name} | {student(r)} | {bits(q)} | {pct(q['top1_float_ort'])} | "
              f"{pct(q['training']['final_top1'])} / {base_top1} | "
              f"{pct(q['top1_fake_quant_tch'])} / {pct(q['top1_quantized_ort'])} | "
              f"{pct(q['top1_agreement_fake_quant_vs_ort'])} | {q['float_file_bytes']:,} → {q['file']['bytes']:,} ({q['compression']:.2f}×) | "
              f"{q['integer_layers']}/{len(q['layers'])} | {speed} | {'pass' if r['passed'] else 'FAIL'} |")


if __name__ == "__main__":
    main()
