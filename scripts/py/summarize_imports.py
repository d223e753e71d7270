"""Turns the results of scripts/verify-imports into Markdown tables: `compress inspect --verify`
(ours) and onnx2torch (scripts/py/onnx2torch_check.py, theirs) side by side, each against ONNX
Runtime on the same input."""
import datetime
import json
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

BOUND = 1e-4
out = Path(sys.argv[1])
results = out / "results"
manifest = json.loads((out / "manifest.json").read_text())


def ours(name):
    """(opset, execution, [batch-1 cell, batch-4 cell], verdict, worst max_rel_diff) of our tool."""
    cells, opset, execution, verdict, worst = ["", ""], "", "", "ok", 0.0
    try:
        v = json.loads((results / f"{name}.json").read_text())
    except Exception:
        try:
            err = (results / f"{name}.err").read_text().strip().splitlines()
        except Exception:
            err = []
        return opset, execution, cells, (err[-1] if err else "no result")[:120], worst
    opset = v.get("opset", "")
    if v.get("unsupported"):
        return opset, execution, cells, "unsupported: " + ", ".join(v["unsupported"])[:120], worst
    execution = v["verify"]["execution"]
    for k, run in enumerate(v["verify"]["runs"]):
        outs = run["outputs"]
        rel = max(o["max_rel_diff"] for o in outs)
        if all(o["reference_max_abs"] == 0 for o in outs):
            verdict = "degenerate: ONNX Runtime output is all zeros"
        worst = max(worst, rel)
        cells[k] = f"{rel:.2e}"
        if rel > BOUND:
            verdict = "TOO FAR"
    return opset, execution, cells, verdict, worst


failures = {}  # (stage, error text) -> [model labels], for the notes under the tables


def theirs(name, label):
    """([converted, batch-1 cell, batch-4 cell], verdict) of onnx2torch; its failures are noted."""
    try:
        v = json.loads((results / f"{name}.onnx2torch.json").read_text())
    except Exception:
        failures.setdefault(("check", "no result (see results/onnx2torch.log)"), []).append(label)
        return ["", "", ""], "no result"
    if not v.get("converted"):
        error = v.get("convert_error") or v.get("error") or "?"
        stage = "not converted"
        missing = re.search(r"operation_type='(\w+)', version=(\d+)", error)
        if "Converter is not implemented" in error and missing:
            stage += f": no converter for {missing[1]} version {missing[2]}"
        failures.setdefault((stage, error), []).append(label)
        return ["no", "", ""], v.get("verdict", "not converted")
    cells = ["yes"]
    for run in v["runs"]:
        if "outputs" in run:
            cells.append(f"{max(o['max_rel_diff'] for o in run['outputs']):.2e}")
        else:
            error = run.get("error") or "ONNX Runtime: " + run.get("reference_error", "?")
            stage = f"runs at batch 1, fails at batch {run['batch']}"
            if run["batch"] > 1 and v.get("batch_one_reshapes"):
                stage += (f" (the model declares a fixed batch of 1 and {v['batch_one_reshapes']} Reshape "
                          "target shape(s) start with that 1: the converted module keeps the batch of 1)")
            elif run["batch"] > 1 and v.get("ort_per_sample"):
                stage += " (the model declares a fixed batch of 1)"
            failures.setdefault((stage, error), []).append(label)
            cells.append("fails")
    cells += [""] * (3 - len(cells))
    if v["verdict"] == "TOO FAR":
        failures.setdefault(("accuracy", f"max_rel_diff above {BOUND:g}"), []).append(label)
    return cells, v["verdict"]


def versions():
    for p in sorted(results.glob("*.onnx2torch.json")):
        try:
            return json.loads(p.read_text())["versions"]
        except Exception:
            continue
    found = {}
    for p in ("onnx2torch", "torch", "onnxruntime", "onnx"):
        try:
            found[p] = version(p)
        except PackageNotFoundError:
            found[p] = "not installed"
    return found


def shorten(text, n=160):
    return text if len(text) <= n else text[: n - 1] + "…"


v = versions()
print("# Import verification: torchvision models through both PyTorch exporters\n")
print(f"Generated on {datetime.date.today().isoformat()} by `./scripts/verify-imports` (random weights, random inputs, CPU, fp32). Each ONNX file "
      "runs through two importers, each compared with ONNX Runtime on the same input at batch 1 and 4:\n")
print("- **ours**: `compress inspect M --verify --json --batch 4` (libtorch through `tch`);")
print(f"- **onnx2torch**: what PyTorch users run ONNX models with: `onnx2torch.convert` (onnx2torch "
      f"{v['onnx2torch']}, PyPI), the converted module run in eval mode under `torch.no_grad` "
      f"(torch {v['torch']}), by `scripts/py/onnx2torch_check.py`.\n")
print(f"Reference: ONNX Runtime {v['onnxruntime']} on the CPU (all graph optimizations, 2 threads). Input: "
      "the declared input shape (NHWC where the model declares it) with the batch set to 1 or 4, "
      "`manual_seed(0)` then `randn`, the same values for both importers. A model whose input declares a "
      "fixed batch of 1, which ONNX Runtime refuses at batch 4, is referenced at batch 4 by ONNX Runtime "
      "run one sample at a time, the outputs concatenated; both importers are given the batch of 4 "
      "at once. max_rel_diff = max|y − y_ORT| / max|y_ORT| over each output (the largest over outputs). "
      "Bound: max_rel_diff <= 1e-4 at both batches for the verdict ok; "
      "\"fails\" means the importer raised at that batch (see the notes under the tables).\n")

print("| model | exporter | opset | ours batch 1 | ours batch 4 | ours verdict "
      "| onnx2torch converted | onnx2torch batch 1 | onnx2torch batch 4 | onnx2torch verdict |")
print("|---|---|---|---|---|---|---|---|---|---|")
worst = 0.0
bad = 0
theirs_ok = 0
by_exporter = {}  # exporter -> [ours ok, onnx2torch ok, files]
for e in manifest:
    by_exporter.setdefault(e["exporter"], [0, 0, 0])[2] += 1
    if not e["ok"]:
        bad += 1
        print(f"| {e['model']} | {e['exporter']} | | | | export failed: {e['error'][:80]} | | | | |")
        continue
    name = Path(e["file"]).stem
    opset, _, cells, verdict, w = ours(name)
    worst = max(worst, w)
    if verdict != "ok":
        bad += 1
    t_cells, t_verdict = theirs(name, f"{e['model']} {e['exporter']}")
    theirs_ok += t_verdict == "ok"
    counts = by_exporter.setdefault(e["exporter"], [0, 0, 0])
    counts[0] += verdict == "ok"
    counts[1] += t_verdict == "ok"
    print(f"| {e['model']} | {e['exporter']} | {opset} | {cells[0]} | {cells[1]} | {verdict} "
          f"| {t_cells[0]} | {t_cells[1]} | {t_cells[2]} | {t_verdict} |")
print(f"\n{len(manifest) - bad} of {len(manifest)} pass; worst max_rel_diff among runs: {worst:.2e}.\n")
print(f"**ours {len(manifest) - bad}/{len(manifest)}, onnx2torch {theirs_ok}/{len(manifest)}** (by exporter: "
      + "; ".join(f"{x} ours {a}/{n}, onnx2torch {b}/{n}" for x, (a, b, n) in by_exporter.items()) + ")")

def file_table(prefix, title, intro):
    """One table of single files (no exporter): ours and onnx2torch per file; the two counts."""
    files = sorted(p for p in results.glob(prefix + "*.json") if not p.name.endswith(".onnx2torch.json"))
    if not files:
        return None
    print(f"\n## {title}\n")
    print(intro + "\n")
    print("| model | opset | ours execution | ours batch 1 | ours batch 4 | ours verdict "
          "| onnx2torch converted | onnx2torch batch 1 | onnx2torch batch 4 | onnx2torch verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = theirs_ok = 0
    for p in files:
        model = p.stem[len(prefix):]
        opset, execution, cells, verdict, _ = ours(p.stem)
        ok += verdict == "ok"
        t_cells, t_verdict = theirs(p.stem, model)
        theirs_ok += t_verdict == "ok"
        print(f"| {model} | {opset} | {execution} | {cells[0]} | {cells[1]} | {verdict} "
              f"| {t_cells[0]} | {t_cells[1]} | {t_cells[2]} | {t_verdict} |")
    return ok, theirs_ok, len(files)


counts = file_table(
    "shared.", "The real third-party teachers in ../shared/onnx",
    "Their quirks are in `../shared/onnx/README.md`: three declare a fixed batch of 1 (one of them "
    "also bakes it into a Reshape constant), one is NHWC from tf2onnx. Same inputs, reference and bound "
    "as above.")
if counts:
    print(f"\n**ours {counts[0]}/{counts[2]}, onnx2torch {counts[1]}/{counts[2]}**")
counts = file_table(
    "zoo.", "Old ONNX model zoo classifiers (Caffe and Caffe2 conversions)",
    "The `light_*` models the `onnx` package ships (onnx/backend/test/data/light): the model zoo's "
    "ImageNet classifiers converted from Caffe and Caffe2 (producer onnx-caffe2, IR 3, opset 9, the "
    "initializers also listed as graph inputs), with every weight replaced by a ConstantOfShape "
    "node to keep them small. The structure and the old-converter quirks are real; the constant "
    "weights make the outputs nearly uniform, so this table shows that the graphs import and run "
    "batched, not that trained weights agree. onnx2torch's Conv converter reads the weight only "
    "from an initializer, so the light form (weights computed by nodes) stops it with a KeyError: "
    "its column here says nothing about the original zoo files. Same inputs, reference and bound "
    "as above.")
if counts:
    print(f"\n**ours {counts[0]}/{counts[2]}** (onnx2torch {counts[1]}/{counts[2]}, not comparable on the light form)")

print("\n## Where onnx2torch fails\n")
if not failures:
    print("Nowhere: every file converted and matched ONNX Runtime at both batches.")
else:
    print("Each failure, the files it hits, and onnx2torch's error (first line, shortened). onnx2torch "
          "stops at the first node it has no converter for, so a file may lack more than the one named.\n")
for (stage, error), labels in failures.items():
    print(f"- **{stage}**: {', '.join(labels)}.  \n  `{shorten(error)}`")
