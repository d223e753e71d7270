"""The PyTorch user's way of running an ONNX model, checked the way `compress inspect --verify`
checks ours: each file is converted with onnx2torch (PyPI), the converted module is run in eval
mode under torch.no_grad at batch 1 and batch 4, and compared with ONNX Runtime on the same
input.

Used by scripts/verify-imports on the same files `compress inspect --verify --json --batch 4`
checks, so that docs/import-verification.md can show both side by side.

Matches `compress inspect --verify` (src/cli/inspect.rs, src/metrics.rs, src/runtime/mod.rs):
- input: the first graph input's declared shape with the batch dimension replaced (NHWC stays
  NHWC), any other symbolic dimension set to 1; torch.manual_seed(0) then torch.randn, the same
  generator and seed our tool uses through libtorch, so both see the same values;
- reference: ONNX Runtime on the CPU, all graph optimizations, 2 intra-op threads, no spinning;
  a model whose first input declares a batch of 1 (which ONNX Runtime refuses at batch 4) runs
  one sample at a time, the outputs concatenated;
- max_rel_diff = max|ours - reference| / max|reference| in float64 (max|ours - reference| when
  the reference is all zeros), per output; the converted module's output is reshaped to the
  reference's shape when the element counts agree, as our tool does;
- verdict ok when every output's max_rel_diff is <= 1e-4 at both batches.

Usage: onnx2torch_check.py OUT_DIR [--prefix P FILE...]...
Writes OUT_DIR/<P><file stem>.onnx2torch.json for each FILE, one at a time, as it goes. Every
exception is caught per model and recorded (its first line); one model never stops the run.
"""
import gc
import json
import sys
import time
import traceback
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

BOUND = 1e-4
BATCHES = (1, 4)
THREADS = 2


def first_line(e):
    text = f"{type(e).__name__}: {e}".strip()
    return (text.splitlines() or [type(e).__name__])[0][:400]


def declared_input(model):
    initializers = {i.name for i in model.graph.initializer}
    for i in model.graph.input:
        if i.name not in initializers:
            dims = []
            for d in i.type.tensor_type.shape.dim:
                dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
            return i.name, dims
    raise ValueError("the model has no inputs")


def batch_one_reshapes(model):
    """How many Reshape nodes take a constant target shape whose first entry is 1: with a declared
    batch of 1 this is the batch baked into the graph."""
    from onnx import numpy_helper

    constants = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    constants[n.output[0]] = a.t
    count = 0
    for n in model.graph.node:
        if n.op_type == "Reshape" and len(n.input) > 1 and n.input[1] in constants:
            shape = numpy_helper.to_array(constants[n.input[1]]).reshape(-1)
            count += bool(shape.size) and int(shape[0]) == 1
    return count


def probe_input(dims, batch):
    shape = [batch if k == 0 else (d if isinstance(d, int) else 1) for k, d in enumerate(dims)]
    torch.manual_seed(0)
    return torch.randn(shape, dtype=torch.float32)


class Reference:
    """ONNX Runtime as our tool runs it."""

    def __init__(self, path):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = THREADS
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.fixed_batch_one = bool(first.shape) and first.shape[0] == 1

    def run(self, x):
        x = x.numpy()
        if self.fixed_batch_one and x.shape[0] > 1:
            pieces = [self.session.run(None, {self.input_name: x[i:i + 1]}) for i in range(x.shape[0])]
            return [np.concatenate([p[k] for p in pieces], axis=0) for k in range(len(pieces[0]))]
        return self.session.run(None, {self.input_name: x})


def max_rel_diff(ours, reference):
    diff = float(np.max(np.abs(ours.astype(np.float64) - reference.astype(np.float64)))) if reference.size else 0.0
    denom = float(np.max(np.abs(reference.astype(np.float64)))) if reference.size else 0.0
    return diff if denom == 0.0 else diff / denom, diff, denom


def compare(outputs, reference):
    if isinstance(outputs, torch.Tensor):
        outputs = [outputs]
    outputs = list(outputs)
    if len(outputs) != len(reference):
        raise ValueError(f"{len(outputs)} outputs, ONNX Runtime gives {len(reference)}")
    per_output = []
    for o, t in zip(outputs, reference):
        o = o.detach().to(torch.float32).cpu().numpy()
        if o.size != t.size:
            raise ValueError(f"output shape {list(o.shape)}, ONNX Runtime gives {list(t.shape)}")
        rel, diff, denom = max_rel_diff(o.reshape(t.shape), t)
        per_output.append({"shape": list(t.shape), "max_abs_diff": diff, "max_rel_diff": rel, "reference_max_abs": denom})
    return per_output


def check(path):
    from onnx2torch import convert

    result = {"model": str(path), "converter": "onnx2torch", "converted": False, "runs": []}
    try:
        model = onnx.load(str(path))
        result["opset"] = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        input_name, dims = declared_input(model)
        result["input"] = {"name": input_name, "shape": dims}
        reference = Reference(path)
        result["ort_per_sample"] = reference.fixed_batch_one
        if reference.fixed_batch_one:
            result["batch_one_reshapes"] = batch_one_reshapes(model)
    except Exception as e:
        result["error"] = "reference: " + first_line(e)
        result["verdict"] = "no reference"
        return result
    started = time.perf_counter()
    try:
        module = convert(model).eval()
        result["converted"] = True
    except Exception as e:
        result["convert_error"] = first_line(e)
        result["verdict"] = "not converted"
        return result
    finally:
        result["convert_seconds"] = round(time.perf_counter() - started, 3)
        del model
    for batch in BATCHES:
        x = probe_input(dims, batch)
        run = {"batch": batch, "input_shape": list(x.shape)}
        try:
            expected = reference.run(x)
        except Exception as e:
            run["reference_error"] = first_line(e)
            result["runs"].append(run)
            continue
        try:
            with torch.no_grad():
                outputs = module(x)
            run["outputs"] = compare(outputs, expected)
        except Exception as e:
            run["error"] = first_line(e)
        result["runs"].append(run)
    verdict = "ok"
    for run in result["runs"]:
        if "reference_error" in run:
            verdict = "no reference"
        elif "error" in run:
            verdict = f"batch {run['batch']} fails"
        elif max(o["max_rel_diff"] for o in run["outputs"]) > BOUND and verdict == "ok":
            verdict = "TOO FAR"
        if verdict != "ok":
            break
    result["verdict"] = verdict
    return result


def main():
    torch.set_num_threads(THREADS)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    versions = {p: version(p) for p in ("onnx2torch", "torch", "onnxruntime", "onnx")}
    prefix = ""
    args = iter(sys.argv[2:])
    for a in args:
        if a == "--prefix":
            prefix = next(args)
            continue
        path = Path(a)
        try:
            result = check(path)
        except Exception as e:  # anything check() did not foresee: record it and go on
            traceback.print_exc(limit=2)
            result = {"model": str(path), "converter": "onnx2torch", "converted": False, "runs": [],
                      "error": first_line(e), "verdict": "error"}
        result["versions"] = versions
        (out / f"{prefix}{path.stem}.onnx2torch.json").write_text(json.dumps(result, indent=1))
        rels = []
        for run in result["runs"]:
            rels.append(f"{max(o['max_rel_diff'] for o in run['outputs']):.2e}" if "outputs" in run else "error")
        print(f"onnx2torch {prefix}{path.stem:40s} {'/'.join(rels) or '-':20s} {result['verdict']}", flush=True)
        gc.collect()


if __name__ == "__main__":
    main()
