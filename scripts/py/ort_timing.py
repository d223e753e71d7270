"""Side-by-side ONNX Runtime timing shared by the benchmark scripts: one session per model (CPU,
all graph optimizations), a warm-up, then rounds that alternate the order of the two models so
drift in machine load hits both; each round takes the median of `runs` runs per model.

With spinning (ONNX Runtime's default) an idle session's worker threads keep spinning for a while
after its run, and on a 2-core machine they take a core from the other session of the round;
`spinning=False` (what `compress` itself times with) makes the threads sleep between runs.
"""
import statistics
import time

import onnxruntime as ort


def session(path, threads, spinning=True):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def timed_median(sess, feed, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(sessions, x, rounds, runs, warmup):
    """Times the two sessions of `sessions` ({name: session}) on input `x`. Returns the median
    seconds per model over rounds and the per-round ratios first / second."""
    (a, b) = sessions
    feeds = {k: {s.get_inputs()[0].name: x} for k, s in sessions.items()}
    for k, s in sessions.items():
        for _ in range(warmup):
            s.run(None, feeds[k])
    per_round = {a: [], b: []}
    ratios = []
    for r in range(rounds):
        for k in ([a, b] if r % 2 == 0 else [b, a]):
            per_round[k].append(timed_median(sessions[k], feeds[k], runs))
        ratios.append(per_round[a][-1] / per_round[b][-1])
    return {k: statistics.median(v) for k, v in per_round.items()}, ratios
