"""Collects what scripts/gpu-check wrote under OUT into one JSON summary (stdout).

Usage: gpu_check_summary.py OUT DEVICE SECONDS"""
import json
import os
import re
import statistics
import sys


def rc(out, name):
    try:
        return int(open(os.path.join(out, name + ".rc")).read().strip())
    except (OSError, ValueError):
        return None


def report(out, folder, file="report.json"):
    try:
        return json.load(open(os.path.join(out, folder, file)))
    except (OSError, ValueError):
        return None


def tail(out, name, n=3):
    try:
        lines = [l for l in open(os.path.join(out, name + ".log")).read().splitlines() if l.strip()]
        return lines[-n:]
    except OSError:
        return []


def host_reads(doc):
    total, epochs = 0, 0
    stack = [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if "host_reads" in v:
                total += v["host_reads"]
                epochs += 1
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return {"total": total, "epochs": epochs}


def main():
    out, device, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = {"device": device, "seconds": seconds}
    s["gpu"] = open(os.path.join(out, "gpu.txt")).read().strip() if os.path.exists(os.path.join(out, "gpu.txt")) else None
    s["torch"] = open(os.path.join(out, "torch.txt")).read().strip() if os.path.exists(os.path.join(out, "torch.txt")) else None
    ops_log = "\n".join(tail(out, "ops", 5))
    m = re.search(r"test result: (\w+)\. (\d+) passed; (\d+) failed", ops_log)
    s["ops"] = {"rc": rc(out, "ops"), "passed": int(m.group(2)) if m else None, "failed": int(m.group(3)) if m else None, "tail": tail(out, "ops")}
    conf_log = "\n".join(tail(out, "conformance", 40))
    m = re.search(r"ONNX node cases(?: on \S+)?: (\d+) of (\d+) cases", conf_log)
    s["conformance"] = {"rc": rc(out, "conformance"), "passed": int(m.group(1)) if m else None, "run": int(m.group(2)) if m else None, "tail": tail(out, "conformance")}
    teachers = {}
    for p in ["fp32", "bf16", "fp16"]:
        r = report(out, "teachers-" + p)
        if rc(out, "teachers-" + p) is None:
            continue
        teachers[p] = {
            "rc": rc(out, "teachers-" + p),
            "test_images": ((r or {}).get("data") or {}).get("test_images"),
            "teachers": [
                {"name": t["name"], "top1": t["top1_tch"], "top1_ort_fp32": t.get("top1_ort"), "agreement_with_ort_fp32": t["top1_agreement_tch_vs_ort"],
                 "logits_mean_abs_diff": t.get("logits_mean_abs_diff_tch_vs_ort"), "logits_max_abs_diff": t.get("logits_max_abs_diff_tch_vs_ort"), "execution": t["execution"]}
                for t in (r or {}).get("teachers", [])
            ],
            "tail": [] if r else tail(out, "teachers-" + p),
        }
    s["teachers"] = teachers
    c = report(out, "methods", "comparison.json")
    s["methods"] = {
        "rc": rc(out, "methods"),
        "methods": len(c["methods"]) if c else None,
        "host_reads_after_first_step": host_reads(c) if c else None,
        "teacher_seconds_per_epoch": c.get("teacher_seconds_per_epoch") if c else None,
        "tail": [] if c else tail(out, "methods"),
    }
    q = report(out, "qat")
    qz = (q or {}).get("quantization") or {}
    keys = ["top1_float_ort", "top1_fake_quant_tch", "top1_quantized_ort", "top1_agreement_fake_quant_vs_ort", "integer_layers"]
    s["qat"] = {"rc": rc(out, "qat"), "quantization": {k: qz.get(k) for k in keys} if qz else None,
                "host_reads_after_first_step": host_reads(q) if q else None, "tail": tail(out, "qat")}
    r = report(out, "recipe")
    s["recipe"] = {
        "rc": rc(out, "recipe"),
        "fidelity": {k: v for k, v in r["fidelity"].items() if not isinstance(v, (dict, list))} if r else None,
        "epoch_seconds": [e["seconds"] for e in r["training"]["epochs"]] if r else None,
        "tail": tail(out, "recipe"),
    }
    d = [report(out, "determinism-%d" % k) for k in (1, 2)]
    losses = [[e["losses"] for e in x["training"]["epochs"]] if x else None for x in d]
    s["determinism"] = {"rc": [rc(out, "determinism-1"), rc(out, "determinism-2")], "identical_losses": losses[0] is not None and losses[0] == losses[1], "losses": losses}
    r = report(out, "resident")
    resident_losses = [e["losses"] for e in r["training"]["epochs"]] if r else None
    s["resident"] = {"rc": rc(out, "resident"), "held_on": (r or {}).get("data", {}).get("loader", {}).get("resident"),
                     "losses_equal_to_loader": resident_losses is not None and resident_losses == losses[0], "tail": tail(out, "resident")}
    c = [report(out, "cache-%d" % k) for k in (1, 2)]
    cache_losses = [[e["losses"] for e in x["training"]["epochs"]] if x else None for x in c]
    s["cache"] = {
        "rc": [rc(out, "cache-1"), rc(out, "cache-2")],
        "records": [x["training"].get("teacher_cache") if x else None for x in c],
        "epoch_seconds": [[e["seconds"] for e in x["training"]["epochs"]] if x else None for x in c],
        "identical_losses": cache_losses[0] is not None and cache_losses[0] == cache_losses[1],
        "losses_equal_to_uncached": cache_losses[0] is not None and cache_losses[0] == losses[0],
    }
    s["sync_debug"] = {
        "mode": "error after the first step" if device.startswith("cuda") else "not applicable on " + device,
        "rc": rc(out, "sync-debug"),
        "methods_rc": rc(out, "sync-debug-methods"),
        "tail": tail(out, "sync-debug", 5),
        "methods_tail": tail(out, "sync-debug-methods", 5),
    }
    n = report(out, "dist-nccl")
    g = report(out, "dist-gloo-cuda")
    s["dist"] = {
        "backend_one_rank": "NCCL" if device.startswith("cuda") else "Gloo (no GPU)",
        "one_rank_rc": rc(out, "dist-nccl"),
        "one_rank_world_size": (n or {}).get("training", {}).get("world_size"),
        "one_rank_losses_equal_to_plain_run": n is not None and [e["losses"] for e in n["training"]["epochs"]] == losses[0],
        "one_rank_tail": tail(out, "dist-nccl", 5),
        "two_ranks_gloo_rc": rc(out, "dist-gloo-cuda"),
        "two_ranks_world_size": (g or {}).get("training", {}).get("world_size"),
        "two_ranks_tail": tail(out, "dist-gloo-cuda", 5),
    }
    ours, nchw, cl = [], [], []
    for k in (1, 2, 3):
        b = report(out, "bench-%d" % k)
        if b:
            e = b["training"]["epochs"][0]
            ours.append((5000 // 64) * 64 / e["seconds"])
        for name, acc in (("nchw", nchw), ("cl", cl)):
            for line in tail(out, "bench-pytorch-%s-%d" % (name, k), 1):
                try:
                    acc.append(json.loads(line)["images_per_second"])
                except ValueError:
                    pass
    med = lambda v: statistics.median(v) if v else None
    s["bench"] = {
        "compress_images_per_second": med(ours),
        "pytorch_eager_images_per_second": med(nchw),
        "pytorch_eager_channels_last_images_per_second": med(cl),
        "ratio_vs_pytorch": med(ours) / med(nchw) if ours and nchw else None,
        "ratio_vs_pytorch_channels_last": med(ours) / med(cl) if ours and cl else None,
        "rounds": {"compress": ours, "pytorch": nchw, "pytorch_channels_last": cl},
        "pytorch_tail": [] if nchw else tail(out, "bench-pytorch-nchw-1"),
    }
    ok = [
        s["ops"]["rc"] == 0,
        s["conformance"]["rc"] == 0,
        all(t["rc"] == 0 and all(x["agreement_with_ort_fp32"] >= 0.995 for x in t["teachers"]) and len(t["teachers"]) == 5 for p, t in teachers.items()),
        s["methods"]["rc"] == 0 and (s["methods"]["host_reads_after_first_step"] or {}).get("total") == 0,
        s["qat"]["rc"] == 0,
        s["recipe"]["rc"] == 0,
        s["determinism"]["identical_losses"],
        s["resident"]["rc"] == 0,
        s["cache"]["rc"] == [0, 0] and s["cache"]["identical_losses"] and ((s["cache"]["records"][1] or {}).get("hits") == 2),
        s["sync_debug"]["rc"] == 0 and s["sync_debug"]["methods_rc"] == 0,
        s["dist"]["one_rank_rc"] == 0 and s["dist"]["one_rank_losses_equal_to_plain_run"],
        s["dist"]["two_ranks_gloo_rc"] == 0 and s["dist"]["two_ranks_world_size"] == 2,
    ]
    s["all_passed"] = all(ok)
    print(json.dumps(s, indent=2))


if __name__ == "__main__":
    main()
