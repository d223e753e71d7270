"""What ONNX Runtime (this environment's Python package) does with a blocked low-bit
DequantizeLinear -> Gemm: whether it fuses it into MatMulNBits, and how far the result is from a
float matmul of the same dequantized weights. Behind two choices in src/export/matmul_nbits.rs:
blocks of at most 256 (larger ones are not fused) and 2-bit grids stored as int4 (int2 fused
results were wrong for a small N).
Usage: .venv/bin/python scripts/py/check_matmulnbits.py
"""
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

INT4, INT2 = 22, 26


def pack(vals, bits):
    """LSB-first packing of signed `bits`-bit values."""
    vals = vals.flatten().astype(np.int64) & ((1 << bits) - 1)
    per = 8 // bits
    out = np.zeros((len(vals) + per - 1) // per, np.uint8)
    for i, v in enumerate(vals):
        out[i // per] |= v << ((i % per) * bits)
    return out.tobytes()


def main():
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp()
    model_path, opt_path = os.path.join(tmp, "m.onnx"), os.path.join(tmp, "m_opt.onnx")
    print(f"ONNX Runtime {ort.__version__}\n")
    print("| bits | K | N | block | ops after optimization | max error / max output |")
    print("|---|---|---|---|---|---|")
    for bits, dtype, opset, ir in [(4, INT4, 21, 10), (2, INT2, 25, 12)]:
        for k, n, block in [(32, 10, 32), (128, 10, 128), (256, 10, 256), (512, 10, 512), (1280, 10, 256), (576, 1024, 64), (576, 1024, 1024)]:
            lim = (1 << (bits - 1)) - 1
            w = rng.integers(-lim, lim + 1, size=(k, n)).astype(np.int8)
            blocks = (k + block - 1) // block
            scale = np.repeat(rng.uniform(0.1, 1, (1, n)).astype(np.float32), blocks, 0)
            bias = rng.standard_normal(n).astype(np.float32)
            dq = helper.make_node("DequantizeLinear", ["w", "s"], ["wd"], axis=0, block_size=block)
            gemm = helper.make_node("Gemm", ["x", "wd", "b"], ["y"])
            graph = helper.make_graph(
                [dq, gemm], "g",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
                [helper.make_tensor("w", dtype, [k, n], pack(w, bits), raw=True), numpy_helper.from_array(scale, "s"), numpy_helper.from_array(bias, "b")])
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir), model_path)
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            opts.optimized_model_filepath = opt_path
            x = rng.standard_normal((8, k)).astype(np.float32)
            y = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
            ref = x @ (w.astype(np.float32) * scale[:1]) + bias
            ops = ", ".join(node.op_type for node in onnx.load(opt_path).graph.node)
            print(f"| {bits} | {k} | {n} | {block} | {ops} | {np.abs(y - ref).max() / np.abs(ref).max():.1e} |")


if __name__ == "__main__":
    main()
