"""Golden fixtures for the distillation losses and teacher-weighting rules of methods.md.

Computes every method's loss terms, weights and connector outputs on tiny, seeded float64 inputs
with PyTorch and writes them to one JSON file that the Rust tests read with serde_json:

    {"generator": "scripts/py/golden_methods.py", "torch": "<version>",
     "cases": {"<name>": {"params":   {"<name>": number | string | bool, ...},
                          "inputs":   {"<name>": {"shape": [..], "data": [row-major numbers]}, ...},
                          "expected": {"<name>": {"shape": [..], "data": [...]}, ...}}}}

Scalars have shape []. Labels are stored as integer numbers. Layout conventions:
  * logits are [B, C]; K teachers are stacked on a leading axis: [K, B, C];
  * per-teacher, per-sample quantities (KL, CE, MSE, entropies, CA-MKD/EBKD/DE-MKD weights) are
    [K, B]; the MMKD meta-weight nets output [B, K] (rows sum to 1), as in the reference code;
  * conv weights are PyTorch's [out, in, kH, kW]; ConvTranspose2d's are [in, out, kH, kW];
    linear weights are [out, in] (y = x·Wᵀ + b).
Random inputs are rounded to 4 decimals before use, so the stored inputs are exactly the ones the
expected values were computed from. The §6.7 values of methods.md are asserted to 1e-6.

Usage (from the repository root; ./scripts/golden-methods does this):
    .venv/bin/python scripts/py/golden_methods.py [OUT.json]
OUT.json defaults to tests/fixtures/methods_golden.json under the repository root.
"""
import itertools
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

DEFAULT_OUT = "tests/fixtures/methods_golden.json"
DKD_CLAMP = 1e-8  # methods.md §2.3 / §6.6: DKD binary probabilities are clamped to >= 1e-8 before log.
TOL_67 = 1e-6


# ---------------------------------------------------------------------------------------------
# Helpers: encoding, seeded inputs
# ---------------------------------------------------------------------------------------------

def enc(x, integer=False):
    """A tensor (or Python number) as {"shape", "data"}; integer=True stores ints (labels)."""
    t = torch.as_tensor(x).detach()
    data = t.reshape(-1).tolist()
    data = [int(v) for v in data] if integer else [float(v) for v in data]
    return {"shape": list(t.shape), "data": data}


def tensors(d, integer_keys=("labels",)):
    return {k: enc(v, integer=k in integer_keys) for k, v in d.items()}


def case(params, inputs, expected):
    return {"params": params, "inputs": tensors(inputs), "expected": tensors(expected)}


def rnd(gen, *shape, scale=1.0, offset=0.0):
    """Seeded normal(offset, scale) values rounded to 4 decimals."""
    x = torch.randn(*shape, generator=gen) * scale + offset
    return torch.round(x * 1e4) / 1e4


def rnd_uniform(gen, *shape, low=0.0, high=1.0):
    x = torch.rand(*shape, generator=gen) * (high - low) + low
    return torch.round(x * 1e4) / 1e4


def gen(seed):
    return torch.Generator().manual_seed(seed)


def mixed_labels(zt):
    """Labels for K teachers [K, B, C]: sample i's label is teacher (i mod K)'s argmax, so every
    sample has a right teacher; the others are mostly wrong. Asserts both kinds occur."""
    k, b, _ = zt.shape
    y = torch.tensor([int(zt[i % k, i].argmax()) for i in range(b)])
    right = zt.argmax(-1) == y
    assert right.any() and (~right).any(), "want some teachers right and some wrong"
    return y


def multi_teacher_inputs(seed, b=4, c=5, k=3, scale=2.5):
    g = gen(seed)
    zs = rnd(g, b, c, scale=scale)
    zt = rnd(g, k, b, c, scale=scale)
    return zs, zt, mixed_labels(zt)


# ---------------------------------------------------------------------------------------------
# Building blocks (methods.md §1.1, §2.3)
# ---------------------------------------------------------------------------------------------

def kd_per_sample(zs, zt, t):
    """§1.1: T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) per sample, summed over classes. [B]."""
    log_ps = F.log_softmax(zs / t, dim=-1)
    log_pt = F.log_softmax(zt / t, dim=-1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(-1) * t * t


def kd_stack(zs, zt, t):
    """Per-teacher, per-sample KD: [K, B]."""
    return torch.stack([kd_per_sample(zs, z, t) for z in zt])


def ce_per_sample(z, y):
    """§1.1: CE(z, y) = −log softmax(z)_y at temperature 1. [B]."""
    return -F.log_softmax(z, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)


def entropy(p):
    """−Σ p log p over the last axis, with 0·log 0 = 0."""
    return torch.special.entr(p).sum(-1)


def binary_probs(z, y, t):
    """[p_g, 1 − p_g] of softmax(z/T), the second one summed over the non-target classes as in
    mdistiller's cat_mask. [B, 2]."""
    p = F.softmax(z / t, dim=-1)
    gt = F.one_hot(y, z.shape[-1]).to(z.dtype)
    return torch.stack([(p * gt).sum(-1), (p * (1 - gt)).sum(-1)], dim=-1)


def non_target_log_probs(z, y, t):
    """§2.3: log-softmax over the non-target classes, the mdistiller way: subtract 1000 from the
    target logit of z/T (its probability underflows to exactly 0 in float64). [B, C]."""
    gt = F.one_hot(y, z.shape[-1]).to(z.dtype)
    return F.log_softmax(z / t - 1000.0 * gt, dim=-1)


def dkd_parts(zs, zt, y, t, clamp=DKD_CLAMP):
    """§2.3 DKD (mdistiller DKD.py), per sample, each already multiplied by T²:
    TCKD = T²·KL(b_t ‖ b_s) and NCKD = T²·KL(p̂_t ‖ p̂_s). The clamp (§6.6) is applied to the
    arguments of both logs of the binary term: Σ b_t·(log max(b_t, ε) − log max(b_s, ε)), ε = 1e-8;
    the fixtures assert that it does not bind, so they equal the unclamped values."""
    bs, bt = binary_probs(zs, y, t), binary_probs(zt, y, t)
    assert bs.min() > clamp and bt.min() > clamp, "the DKD clamp would bind on these inputs"
    tckd = (bt * (bt.clamp_min(clamp).log() - bs.clamp_min(clamp).log())).sum(-1) * t * t
    log_qs = non_target_log_probs(zs, y, t)
    log_qt = non_target_log_probs(zt, y, t)
    # F.kl_div(input=log q_s, target=q_t) = xlogy(q_t, q_t) − q_t·log q_s: the masked target
    # class has q_t = 0 exactly and contributes 0, as in mdistiller.
    nckd = F.kl_div(log_qs, log_qt.exp(), reduction="none").sum(-1) * t * t
    # Cross-check against dropping the target column and renormalising explicitly.
    keep = ~F.one_hot(y, zs.shape[-1]).bool()
    c = zs.shape[-1]
    drop_s = F.log_softmax((zs / t)[keep].reshape(-1, c - 1), -1)
    drop_t = F.log_softmax((zt / t)[keep].reshape(-1, c - 1), -1)
    nckd_drop = (drop_t.exp() * (drop_t - drop_s)).sum(-1) * t * t
    assert torch.allclose(nckd, nckd_drop, rtol=0, atol=1e-12)
    return tckd, nckd, bt[:, 0]


def dkd_stack(zs, zt, y, t):
    parts = [dkd_parts(zs, z, y, t) for z in zt]
    return torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts])


def ebkd_weights(zt):
    """§3.3: H_k(i) at T = 1 and w_k(i) = 1 − H_k(i)/Σ_j H_j(i) (sums to K − 1). [K, B] each."""
    h = entropy(F.softmax(zt, dim=-1))
    return h, 1.0 - h / h.sum(0, keepdim=True)


def confidence_weights(ce):
    """§3.5: w_k(i) = (1 − softmax_k(CE_·(i))_k)/(K − 1) from [K, B] cross-entropies."""
    k = ce.shape[0]
    return (1.0 - F.softmax(ce, dim=0)) / (k - 1)


def batch_norm_train(x, weight, bias, eps=1e-5, momentum=0.1):
    """BatchNorm2d in training mode: batch statistics over (N, H, W), biased variance for the
    normalisation. Also returns the running statistics after this one update from a fresh layer
    (mean 0, var 1): running = (1 − momentum)·running + momentum·batch, batch var unbiased."""
    rm = torch.zeros(x.shape[1])
    rv = torch.ones(x.shape[1])
    y = F.batch_norm(x, rm, rv, weight, bias, training=True, momentum=momentum, eps=eps)
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    manual = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + eps)
    manual = manual * weight[None, :, None, None] + bias[None, :, None, None]
    assert torch.allclose(y, manual, rtol=0, atol=1e-12)
    return y, rm, rv


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------

SECTION_6_7 = {  # methods.md §6.7 (golden_vectors.py's printed outputs), asserted to 1e-6
    "kl": [[0.609945, 0.300357], [0.112719, 0.069486], [0.408105, 0.599934]],
    "aver_loss": 0.350091,
    "ebkd_weights": [[0.795477, 0.71387], [0.55809, 0.490712], [0.646433, 0.795418]],
    "ebkd_loss": 0.256271,
    "teacher_ce": [[0.149463, 0.240391], [0.759395, 1.403114], [2.157722, 0.142121]],
    "ca_mkd_weights": [[0.451412, 0.402057], [0.410583, 0.186718], [0.138004, 0.411224]],
    "ca_mkd_loss": 0.126397,
    "dkd_tckd_mean": 0.427302,
    "dkd_nckd_mean": 0.047336,
    "dkd_loss": 0.805991,
}


def case_section_6_7():
    """§6.7: the B=2, C=4, K=3, T=4 inputs of golden_vectors.py; AVER (§3.1), EBKD (§3.3),
    CA-MKD logits (§3.5), DKD for teacher 0 (§2.3, α=1, β=8)."""
    t, alpha, beta = 4.0, 1.0, 8.0
    y = torch.tensor([0, 2])
    zs = torch.tensor([[1.0, 0.5, -0.3, 0.2], [0.1, 0.3, 0.8, -0.5]])
    zt = torch.tensor([
        [[3.0, 0.2, -1.0, 0.5], [0.0, 0.4, 2.5, -0.2]],
        [[1.5, 1.2, 0.1, -0.4], [1.0, 0.9, 0.7, 0.0]],
        [[0.2, 2.0, -0.5, 0.3], [-0.3, 0.2, 3.0, 0.1]],
    ])
    k, b = zt.shape[0], zs.shape[0]
    kl = kd_stack(zs, zt, t)
    aver = kl.mean(1).mean(0)
    _, w_eb = ebkd_weights(zt)
    eb = (w_eb * kl).sum() / (b * k)
    ce = torch.stack([ce_per_sample(z, y) for z in zt])
    w_ca = confidence_weights(ce)
    ca = (w_ca * kl).sum() / (b * k)
    tckd, nckd, pg = dkd_parts(zs, zt[0], y, t)
    assert (kl[0] - (tckd + (1 - pg) * nckd)).abs().max() < 1e-12
    exp = {
        "kl": kl, "aver_loss": aver, "ebkd_weights": w_eb, "ebkd_loss": eb,
        "teacher_ce": ce, "ca_mkd_weights": w_ca, "ca_mkd_loss": ca,
        "dkd_tckd": tckd, "dkd_nckd": nckd, "dkd_tckd_mean": tckd.mean(), "dkd_nckd_mean": nckd.mean(),
        "dkd_loss": alpha * tckd.mean() + beta * nckd.mean(),
    }
    for name, want in SECTION_6_7.items():
        err = (exp[name] - torch.tensor(want)).abs().max().item()
        assert err <= TOL_67, f"§6.7 {name}: off by {err}"
    params = {"T": t, "alpha": alpha, "beta": beta, "dkd_teacher": 0, "dkd_clamp": DKD_CLAMP,
              "tolerance_vs_methods_md": TOL_67}
    return case(params, {"student": zs, "teachers": zt, "labels": y}, exp)


def case_ce():
    """§1.1: cross-entropy at T = 1, per sample and its batch mean."""
    g = gen(101)
    z = rnd(g, 4, 5, scale=2.5)
    y = torch.tensor([1, 0, 4, 2])
    ce = ce_per_sample(z, y)
    assert torch.allclose(ce.mean(), F.cross_entropy(z, y), rtol=0, atol=1e-12)
    return case({}, {"logits": z, "labels": y}, {"ce": ce, "ce_mean": ce.mean()})


def kd_case(t):
    """§1.1 / §2.1: per-sample T²·KL(p_t^T ‖ p_s^T) and its batchmean."""
    g = gen(102)
    zs = rnd(g, 4, 5, scale=2.5)
    zt = rnd(g, 4, 5, scale=3.0)
    kl = kd_per_sample(zs, zt, t)
    ref = F.kl_div(F.log_softmax(zs / t, -1), F.softmax(zt / t, -1), reduction="batchmean") * t * t
    assert torch.allclose(kl.mean(), ref, rtol=0, atol=1e-12)
    return case({"T": t}, {"student": zs, "teacher": zt}, {"kl": kl, "kd_batchmean": kl.mean()})


def case_kd():
    return kd_case(4.0)


def case_kd_t1():
    return kd_case(1.0)


def case_dkd():
    """§2.3: DKD (mdistiller), per-sample TCKD/NCKD (×T²), batch means, α·TCKD + β·NCKD and the
    identity T²·KL = TCKD + (1 − p_t,g)·NCKD."""
    t, alpha, beta = 4.0, 1.0, 8.0
    g = gen(103)
    zs = rnd(g, 4, 5, scale=2.5)
    zt = rnd(g, 4, 5, scale=3.0)
    am = zt.argmax(-1)
    # Teacher right on even samples, wrong on odd ones.
    y = torch.tensor([int(am[i]) if i % 2 == 0 else (int(am[i]) + 1) % 5 for i in range(4)])
    tckd, nckd, pg = dkd_parts(zs, zt, y, t)
    kl = kd_per_sample(zs, zt, t)
    gap = (kl - (tckd + (1 - pg) * nckd)).abs().max()
    assert gap < 1e-12
    exp = {"tckd": tckd, "nckd": nckd, "tckd_mean": tckd.mean(), "nckd_mean": nckd.mean(),
           "loss": alpha * tckd.mean() + beta * nckd.mean(), "kl": kl, "teacher_p_target": pg,
           "identity_gap": gap}
    params = {"T": t, "alpha": alpha, "beta": beta, "clamp": DKD_CLAMP,
              "clamp_rule": "log(max(b, clamp)) for both binary distributions; does not bind here",
              "non_target_mask": "subtract 1000 from the target logit of z/T"}
    return case(params, {"student": zs, "teacher": zt, "labels": y}, exp)


def case_aver():
    """§3.1: L_div = (1/K)·Σ_k batchmean_i kl_k(i)."""
    t = 4.0
    zs, zt, y = multi_teacher_inputs(104)
    kl = kd_stack(zs, zt, t)
    per_teacher = kl.mean(1)
    return case({"T": t}, {"student": zs, "teachers": zt},
                {"kl": kl, "kd_batchmean": per_teacher, "loss": per_teacher.mean()})


def case_ebkd():
    """§3.3: EBKD weights from teacher entropy at T = 1; L_div = Σ w·kl / (B·K)."""
    t = 4.0
    zs, zt, _ = multi_teacher_inputs(105)
    k, b = zt.shape[:2]
    kl = kd_stack(zs, zt, t)
    h, w = ebkd_weights(zt)
    assert torch.allclose(w.sum(0), torch.full((b,), k - 1.0), rtol=0, atol=1e-12)
    return case({"T": t, "entropy_T": 1.0}, {"student": zs, "teachers": zt},
                {"entropy": h, "weights": w, "kl": kl, "loss": (w * kl).sum() / (b * k)})


def case_ca_mkd_logits():
    """§3.5 logit level: CE_k(i) at T = 1, w = (1 − softmax_k(CE))/(K − 1); L_div = Σ w·kl/(B·K)."""
    t = 4.0
    zs, zt, y = multi_teacher_inputs(106)
    k, b = zt.shape[:2]
    kl = kd_stack(zs, zt, t)
    ce = torch.stack([ce_per_sample(z, y) for z in zt])
    w = confidence_weights(ce)
    assert torch.allclose(w.sum(0), torch.ones(b), rtol=0, atol=1e-12)
    return case({"T": t}, {"student": zs, "teachers": zt, "labels": y},
                {"teacher_ce": ce, "weights": w, "kl": kl, "loss": (w * kl).sum() / (b * k)})


def case_ca_mkd_features():
    """§3.5 feature level: o_k = FC_k(GAP(h_k)), u = CE(o_k, y), v = (1 − softmax_k(u))/(K − 1),
    MSE_k(i) = mean over (C,H,W), L_kd = Σ v·MSE / (B·K); ∂L_kd/∂h with v live (reference code,
    detach_feature_weights=false) and with v detached (detach_feature_weights=true)."""
    k, b, c, ct, hw = 3, 4, 5, 3, 2
    g = gen(107)
    h = rnd_uniform(g, k, b, ct, hw, hw, low=0.0, high=2.0)   # post-ReLU Embed outputs
    f = rnd_uniform(g, k, b, ct, hw, hw, low=0.0, high=2.0)   # post-ReLU teacher maps
    fc_w = rnd(g, k, c, ct, scale=1.5)
    fc_b = rnd(g, k, c, scale=0.3)
    y = torch.tensor([0, 3, 1, 4])

    def loss_of(hh, detach):
        o = torch.stack([F.linear(hh[j].mean(dim=(2, 3)), fc_w[j], fc_b[j]) for j in range(k)])
        u = torch.stack([ce_per_sample(o[j], y) for j in range(k)])
        v = confidence_weights(u)
        mse = ((hh - f) ** 2).reshape(k, b, -1).mean(-1)
        vv = v.detach() if detach else v
        return (vv * mse).sum() / (b * k), o, u, v, mse

    grads = {}
    for detach in (False, True):
        hh = h.clone().requires_grad_(True)
        loss, o, u, v, mse = loss_of(hh, detach)
        (grads[detach],) = torch.autograd.grad(loss, hh)
    right = o.argmax(-1) == y
    assert right.any() and (~right).any()
    exp = {"o": o, "u": u, "v": v, "mse": mse, "loss": loss,
           "grad_h_live": grads[False], "grad_h_detached": grads[True]}
    params = {"reduction": "sum(v*mse)/(B*K)", "fc": "o = GAP(h)·Wᵀ + b with W [C, Ct]"}
    return case(params, {"h": h, "f": f, "fc_weight": fc_w, "fc_bias": fc_b, "labels": y}, exp)


# --- AEKD (§3.4) -------------------------------------------------------------------------------

def capped_simplex_min_norm(gram, cap):
    """Exact argmin_a aᵀ·G·a s.t. Σ a = 1, 0 ≤ a_k ≤ cap, by enumerating active sets: each index
    is at 0, free, or at cap; the free ones solve the equality-constrained KKT system
    G_FF·a_F − m·1 = −cap·G_FU·1, Σ a_F = 1 − cap·|U| (m = common gradient value of the free
    ones). A candidate is kept when it is primal feasible and the KKT signs hold
    ((G a)_k ≥ m at 0, ≤ m at cap). Returns the lowest-objective KKT point and its active set."""
    k = gram.shape[0]
    tol = 1e-12
    best = None
    for states in itertools.product("0FU", repeat=k):
        free = [j for j, s in enumerate(states) if s == "F"]
        upper = [j for j, s in enumerate(states) if s == "U"]
        lower = [j for j, s in enumerate(states) if s == "0"]
        a = torch.zeros(k)
        a[upper] = cap
        r = 1.0 - cap * len(upper)
        if free:
            n = len(free)
            m_mat = torch.zeros(n + 1, n + 1)
            m_mat[:n, :n] = gram[free][:, free]
            m_mat[:n, n] = -1.0
            m_mat[n, :n] = 1.0
            rhs = torch.zeros(n + 1)
            rhs[:n] = -(gram[free][:, upper].sum(1) * cap) if upper else 0.0
            rhs[n] = r
            if torch.linalg.matrix_rank(m_mat) < n + 1:
                continue
            sol = torch.linalg.solve(m_mat, rhs)
            a[free] = sol[:n]
            m = sol[n].item()
        elif abs(r) > tol:
            continue
        if (a < -tol).any() or (a > cap + tol).any() or abs(a.sum().item() - 1.0) > 1e-10:
            continue
        grad = gram @ a
        if not free:  # any m between max over U and min over L will do
            lo = max([grad[j].item() for j in upper], default=-float("inf"))
            hi = min([grad[j].item() for j in lower], default=float("inf"))
            if lo > hi + 1e-12:
                continue
        else:
            if any(grad[j].item() < m - 1e-10 for j in lower):
                continue
            if any(grad[j].item() > m + 1e-10 for j in upper):
                continue
        obj = (a @ gram @ a).item()
        if best is None or obj < best[0] - 1e-15:
            best = (obj, a, "".join(states))
    assert best is not None
    return best[1], best[2]


def project_capped_simplex(v, cap):
    """Euclidean projection onto {Σ a = 1, 0 ≤ a ≤ cap} by bisection on the shift."""
    lo, hi = min(v) - cap - 1.0, max(v) + 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        s = sum(min(max(x - mid, 0.0), cap) for x in v)
        lo, hi = (mid, hi) if s > 1.0 else (lo, mid)
    mid = 0.5 * (lo + hi)
    return [min(max(x - mid, 0.0), cap) for x in v]


def projected_gradient(gram, cap, iters=20000):
    """Cross-check of the enumeration: projected gradient descent with step 1/(2·λ_max(G)),
    until the iterate stops moving."""
    k = gram.shape[0]
    step = 1.0 / (2.0 * torch.linalg.eigvalsh(gram).max().item())
    gm = gram.tolist()
    a = [1.0 / k] * k
    for _ in range(iters):
        grad = [2.0 * sum(gm[i][j] * a[j] for j in range(k)) for i in range(k)]
        new = project_capped_simplex([a[i] - step * grad[i] for i in range(k)], cap)
        moved = max(abs(x - y) for x, y in zip(new, a))
        a = new
        if moved < 1e-15:
            break
    return torch.tensor(a)


def case_aekd():
    """§3.4: KD_k (batchmean), ḡ_k = batch mean of ∂KD_k/∂z_s, min-norm weights a* on the capped
    simplex (C_tol = 0.6) solved exactly, and L_div = Σ a_k·KD_k. svm_norm off (default)."""
    t, cap = 4.0, 0.6
    zs, zt, _ = multi_teacher_inputs(108)
    kd = []
    grads = []
    for z in zt:
        s = zs.clone().requires_grad_(True)
        loss = kd_per_sample(s, z, t).mean()
        (gz,) = torch.autograd.grad(loss, s)
        kd.append(loss.detach())
        grads.append(gz.mean(0))
    kd, gbar = torch.stack(kd), torch.stack(grads)
    gram = gbar @ gbar.T
    a, active = capped_simplex_min_norm(gram, cap)
    a_pg = projected_gradient(gram, cap)
    assert (a - a_pg).abs().max() < 1e-8, (a, a_pg)
    params = {"T": t, "C_tol": cap, "svm_norm": False,
              "gradient": "d(batchmean KD_k)/dz_s, then mean over the batch rows",
              "active_set": active + " (per teacher: 0 = at 0, F = free, U = at C_tol)"}
    exp = {"kd": kd, "grad_mean": gbar, "gram": gram, "weights": a, "loss": (a * kd).sum()}
    return case(params, {"student": zs, "teachers": zt}, exp)


def aekd_two_teacher(g1, g2, cap):
    """§3.4 closed form for K = 2: a = clip(−(g1 − g2)·g2/‖g1 − g2‖², 1 − C, C)."""
    grads = torch.tensor([g1, g2])
    d = grads[0] - grads[1]
    a_free = -(d @ grads[1]) / (d @ d)
    a = a_free.clamp(1.0 - cap, cap)
    w = torch.stack([a, 1.0 - a])
    exact, _ = capped_simplex_min_norm(grads @ grads.T, cap)
    assert (exact - w).abs().max() < 1e-12
    return grads, a_free, w


def case_aekd_two_teacher():
    """§3.4 / §6.7: g1 = (1, 0), g2 = (0.2, 0.5), C = 0.6 → (0.4, 0.6); optimum 0.101 clipped."""
    cap = 0.6
    grads, a_free, w = aekd_two_teacher([1.0, 0.0], [0.2, 0.5], cap)
    assert abs(w[0].item() - 0.4) < TOL_67 and abs(w[1].item() - 0.6) < TOL_67
    assert abs(a_free.item() - 0.101) < 1e-3
    return case({"C_tol": cap, "clipped": True}, {"grads": grads},
                {"a_unclipped": a_free, "weights": w})


def case_aekd_two_teacher_interior():
    """§3.4: a K = 2 example whose optimum lies inside [1 − C, C]: g1 = (1, 0.2), g2 = (−0.5, 0.8),
    a = 1.23/2.61 = 0.471264…"""
    cap = 0.6
    grads, a_free, w = aekd_two_teacher([1.0, 0.2], [-0.5, 0.8], cap)
    assert 1.0 - cap < a_free.item() < cap and abs(a_free.item() - 1.23 / 2.61) < 1e-12
    return case({"C_tol": cap, "clipped": False}, {"grads": grads},
                {"a_unclipped": a_free, "weights": w})


# --- Connectors (§1.3, §2.2) -------------------------------------------------------------------

def case_fitnets_mse():
    """§2.2: MSE(ConvReg(f_s), f_t) = mean over all B·C·H·W elements."""
    g = gen(109)
    s = rnd_uniform(g, 2, 3, 2, 2, low=0.0, high=2.0)
    t = rnd_uniform(g, 2, 3, 2, 2, low=0.0, high=2.0)
    mse = ((s - t) ** 2).mean()
    assert torch.allclose(mse, F.mse_loss(s, t), rtol=0, atol=1e-15)
    return case({"reduction": "mean over all elements"}, {"student_hint": s, "teacher": t}, {"mse": mse})


def conv_bn_relu(x, w, b, bn_w, bn_b, **conv_kw):
    y, rm, rv = batch_norm_train(F.conv2d(x, w, b, **conv_kw), bn_w, bn_b)
    return F.relu(y), rm, rv


def bn_params(g, c):
    return rnd(g, c, scale=0.3, offset=1.0), rnd(g, c, scale=0.3)


def case_embed():
    """§1.3 Embed, convs=False: Conv1×1(s_C→t_C, bias) → BN (training mode) → ReLU."""
    g = gen(110)
    b, cs, ct, hw = 4, 4, 3, 2
    x = rnd_uniform(g, b, cs, hw, hw, low=0.0, high=2.0)
    w = rnd(g, ct, cs, 1, 1, scale=0.5)
    cb = rnd(g, ct, scale=0.2)
    bn_w, bn_b = bn_params(g, ct)
    out, rm, rv = conv_bn_relu(x, w, cb, bn_w, bn_b)
    ref = torch.nn.Sequential(torch.nn.Conv2d(cs, ct, 1), torch.nn.BatchNorm2d(ct), torch.nn.ReLU()).train()
    with torch.no_grad():
        ref[0].weight.copy_(w); ref[0].bias.copy_(cb); ref[1].weight.copy_(bn_w); ref[1].bias.copy_(bn_b)
        assert torch.allclose(ref(x), out, rtol=0, atol=1e-12)
        assert torch.allclose(ref[1].running_mean, rm) and torch.allclose(ref[1].running_var, rv)
    params = {"convs": False, "conv_bias": True, "bn_eps": 1e-5, "bn_momentum": 0.1, "bn_mode": "train",
              "running_stats": "after one update from mean 0 / var 1, unbiased batch variance"}
    inputs = {"x": x, "conv_weight": w, "conv_bias": cb, "bn_weight": bn_w, "bn_bias": bn_b}
    return case(params, inputs, {"out": out, "bn_running_mean": rm, "bn_running_var": rv})


def case_embed_convs():
    """§1.3 Embed, convs=True, factor 2: Conv1×1(s_C→s_C/2) → BN → ReLU → Conv3×3(pad 1) → BN → ReLU
    → Conv1×1(s_C/2→t_C) → BN → ReLU. All three convs have a bias (nn.Conv2d defaults in the
    CA-MKD/MMKD Embed). In training-mode BN a conv bias cancels out of the output; it shows only in
    the running means."""
    g = gen(111)
    b, cs, ct, hw = 4, 4, 3, 3
    mid = cs // 2
    x = rnd_uniform(g, b, cs, hw, hw, low=0.0, high=2.0)
    w1, b1 = rnd(g, mid, cs, 1, 1, scale=0.5), rnd(g, mid, scale=0.2)
    bn1 = bn_params(g, mid)
    w2, b2 = rnd(g, mid, mid, 3, 3, scale=0.4), rnd(g, mid, scale=0.2)
    bn2 = bn_params(g, mid)
    w3, b3 = rnd(g, ct, mid, 1, 1, scale=0.5), rnd(g, ct, scale=0.2)
    bn3 = bn_params(g, ct)
    y1, rm1, rv1 = conv_bn_relu(x, w1, b1, *bn1)
    y2, rm2, rv2 = conv_bn_relu(y1, w2, b2, *bn2, padding=1)
    out, rm3, rv3 = conv_bn_relu(y2, w3, b3, *bn3)
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(cs, mid, 1), torch.nn.BatchNorm2d(mid), torch.nn.ReLU(),
        torch.nn.Conv2d(mid, mid, 3, padding=1), torch.nn.BatchNorm2d(mid), torch.nn.ReLU(),
        torch.nn.Conv2d(mid, ct, 1), torch.nn.BatchNorm2d(ct), torch.nn.ReLU()).train()
    with torch.no_grad():
        for i, (w, cb, (bw, bb)) in zip((0, 3, 6), ((w1, b1, bn1), (w2, b2, bn2), (w3, b3, bn3))):
            ref[i].weight.copy_(w); ref[i].bias.copy_(cb); ref[i + 1].weight.copy_(bw); ref[i + 1].bias.copy_(bb)
        assert torch.allclose(ref(x), out, rtol=0, atol=1e-12)
        assert torch.allclose(ref[7].running_mean, rm3) and torch.allclose(ref[7].running_var, rv3)
    params = {"convs": True, "factor": 2, "conv_bias": "all three convs (conv1, conv2, conv3)",
              "conv2_padding": 1, "bn_eps": 1e-5, "bn_momentum": 0.1, "bn_mode": "train"}
    inputs = {"x": x, "conv1_weight": w1, "conv1_bias": b1, "bn1_weight": bn1[0], "bn1_bias": bn1[1],
              "conv2_weight": w2, "conv2_bias": b2, "bn2_weight": bn2[0], "bn2_bias": bn2[1],
              "conv3_weight": w3, "conv3_bias": b3, "bn3_weight": bn3[0], "bn3_bias": bn3[1]}
    exp = {"hidden1": y1, "hidden2": y2, "out": out,
           "bn1_running_mean": rm1, "bn1_running_var": rv1, "bn2_running_mean": rm2,
           "bn2_running_var": rv2, "bn3_running_mean": rm3, "bn3_running_var": rv3}
    return case(params, inputs, exp)


def convreg_case(seed, s_hw, t_hw):
    """§1.3 ConvReg (RepDistiller), with the conv's default bias, then BN (training mode), ReLU:
    s_H == 2·t_H → Conv3×3 stride 2 pad 1; 2·s_H == t_H → ConvTranspose 4×4 stride 2 pad 1;
    s_H ≥ t_H → Conv kernel (1+s_H−t_H, 1+s_W−t_W); otherwise Conv3×3 stride 1 pad 1."""
    g = gen(seed)
    b, cs, ct = 2, 3, 2
    x = rnd_uniform(g, b, cs, s_hw, s_hw, low=0.0, high=2.0)
    if s_hw == 2 * t_hw:
        kind, ksz, kw = "conv3x3_stride2_pad1", 3, {"stride": 2, "padding": 1}
    elif 2 * s_hw == t_hw:
        kind, ksz, kw = "convtranspose4x4_stride2_pad1", 4, {"stride": 2, "padding": 1}
    elif s_hw >= t_hw:
        kind, ksz, kw = f"conv{1 + s_hw - t_hw}x{1 + s_hw - t_hw}", 1 + s_hw - t_hw, {}
    else:
        kind, ksz, kw = "conv3x3_pad1", 3, {"padding": 1}
    transpose = kind.startswith("convtranspose")
    w = rnd(g, *((cs, ct) if transpose else (ct, cs)), ksz, ksz, scale=0.4)
    cb = rnd(g, ct, scale=0.2)
    bn_w, bn_b = bn_params(g, ct)
    pre = F.conv_transpose2d(x, w, cb, **kw) if transpose else F.conv2d(x, w, cb, **kw)
    assert pre.shape[-1] == t_hw and pre.shape[-2] == t_hw
    y, rm, rv = batch_norm_train(pre, bn_w, bn_b)
    out = F.relu(y)
    conv = (torch.nn.ConvTranspose2d(cs, ct, 4, stride=2, padding=1) if transpose
            else torch.nn.Conv2d(cs, ct, ksz, **kw))
    ref = torch.nn.Sequential(conv, torch.nn.BatchNorm2d(ct), torch.nn.ReLU()).train()
    with torch.no_grad():
        ref[0].weight.copy_(w); ref[0].bias.copy_(cb); ref[1].weight.copy_(bn_w); ref[1].bias.copy_(bn_b)
        assert torch.allclose(ref(x), out, rtol=0, atol=1e-12)
    params = {"s_H": s_hw, "t_H": t_hw, "s_C": cs, "t_C": ct, "conv": kind, "conv_bias": True,
              "weight_layout": "[in, out, kH, kW]" if transpose else "[out, in, kH, kW]",
              "bn_eps": 1e-5, "bn_momentum": 0.1, "bn_mode": "train"}
    inputs = {"x": x, "conv_weight": w, "conv_bias": cb, "bn_weight": bn_w, "bn_bias": bn_b}
    return case(params, inputs, {"out": out, "bn_running_mean": rm, "bn_running_var": rv})


def case_convreg_down2():
    return convreg_case(112, 4, 2)


def case_convreg_up2():
    return convreg_case(113, 2, 4)


def case_convreg_shrink():
    return convreg_case(114, 4, 3)


def case_convreg_same():
    return convreg_case(115, 3, 3)


# --- MMKD (§4.1) -------------------------------------------------------------------------------

def mlp_weight_net(x, w1, b1, w2, b2):
    """§4.1.1 LogitsWeight / FeatureWeight: Linear → ReLU → Linear → softmax over K."""
    return F.softmax(F.linear(F.relu(F.linear(x, w1, b1)), w2, b2), dim=-1)


def logits_weight_input(zt, zs):
    """§4.1.1: x_i = concat(z_1,i, …, z_K,i, stopgrad(z_s,i)). [B, C·(K+1)]."""
    return torch.cat(list(zt) + [zs.detach()], dim=1)


def gram(feat):
    f = feat.reshape(feat.shape[0], -1)
    return f @ f.T


def net_params(g, n_in, k):
    hid = n_in // 2
    return (rnd(g, hid, n_in, scale=0.3), rnd(g, hid, scale=0.1),
            rnd(g, k, hid, scale=0.5), rnd(g, k, scale=0.1))


def case_mmkd_weights():
    """§4.1.1: LogitsWeight on logits → w^L [B, K]; FeatureWeight on Gram rows → w^F [B, K];
    L_kd = (1/B)·Σ_i Σ_k w^L_k(i)·kl_k(i) and L_feat = (1/B)·Σ_i Σ_k w^F_k(i)·MSE_k(i) (no 1/K)."""
    t = 4.0
    k, b, c = 3, 4, 4
    g = gen(116)
    zs = rnd(g, b, c, scale=2.5)
    zt = rnd(g, k, b, c, scale=2.5)
    feat_t = rnd_uniform(g, k, b, 2, 2, 2, low=0.0, high=1.0)
    feat_s = rnd_uniform(g, b, 3, 2, 2, low=0.0, high=1.0)
    mse = rnd_uniform(g, k, b, low=0.1, high=1.0)
    lw = net_params(g, c * (k + 1), k)
    fw = net_params(g, b * (k + 1), k)
    x_l = logits_weight_input(zt, zs)
    w_l = mlp_weight_net(x_l, *lw)
    x_f = torch.cat([gram(f) for f in feat_t] + [gram(feat_s)], dim=1)
    w_f = mlp_weight_net(x_f, *fw)
    kl = kd_stack(zs, zt, t)
    inputs = {"student": zs, "teachers": zt, "teacher_feats": feat_t, "student_feat": feat_s, "mse": mse,
              "logits_w1": lw[0], "logits_b1": lw[1], "logits_w2": lw[2], "logits_b2": lw[3],
              "feature_w1": fw[0], "feature_b1": fw[1], "feature_w2": fw[2], "feature_b2": fw[3]}
    exp = {"logits_input": x_l, "w_logits": w_l, "feature_input": x_f, "w_feature": w_f, "kl": kl,
           "l_kd": (w_l * kl.T).sum() / b, "l_feat": (w_f * mse.T).sum() / b}
    params = {"T": t, "hidden": "n_in // 2", "logits_input": "concat(z_1..z_K, z_s) along classes",
              "feature_input": "concat(S_1..S_K, S_s) rows, S = F·Fᵀ of [B, c·h·w] maps",
              "mse_layout": "[K, B]", "weights_layout": "[B, K]"}
    return case(params, inputs, exp)


def case_mmkd_hypergradient():
    """§4.1.4: one-step lookahead. Student z_s = x·Wᵀ + b; L_match = (1/B)·Σ_i Σ_k w^L_k(i)·kl_k(i)
    (α = 1, no feature term), w^L = LogitsWeight_φ(z_1..z_K, stopgrad z_s); θ' = θ − lr·∇θ L_match
    (plain SGD); dφ = ∂L_out(θ')/∂φ with L_out = mean CE on the same batch; equals
    −lr·∇φ⟨∇θ L_match, stopgrad(∇θ' L_out(θ'))⟩."""
    t, lr = 4.0, 0.1
    k, b, c, d = 3, 4, 4, 3
    g = gen(117)
    x = rnd(g, b, d, scale=1.0)
    w = rnd(g, c, d, scale=1.0)
    bias = rnd(g, c, scale=0.3)
    zt = rnd(g, k, b, c, scale=2.5)
    y = mixed_labels(zt)
    phi = [p.clone().requires_grad_(True) for p in net_params(g, c * (k + 1), k)]
    theta = [w.clone().requires_grad_(True), bias.clone().requires_grad_(True)]

    zs = F.linear(x, *theta)
    w_l = mlp_weight_net(logits_weight_input(zt, zs), *phi)
    kl = kd_stack(zs, zt, t)
    l_match = (w_l * kl.T).sum() / b
    g_theta = torch.autograd.grad(l_match, theta, create_graph=True)
    theta1 = [p - lr * gp for p, gp in zip(theta, g_theta)]
    l_out = F.cross_entropy(F.linear(x, *theta1), y)
    dphi = torch.autograd.grad(l_out, phi, retain_graph=True)
    v = [gv.detach() for gv in torch.autograd.grad(l_out, theta1, retain_graph=True)]
    inner = sum((gp * gv).sum() for gp, gv in zip(g_theta, v))
    dphi_formula = [-lr * gi for gi in torch.autograd.grad(inner, phi)]
    for a, bb in zip(dphi, dphi_formula):
        assert torch.allclose(a, bb, rtol=0, atol=1e-12)
    assert max(a.abs().max().item() for a in dphi) > 1e-6, "hypergradient should be non-zero"
    names = ["w1", "b1", "w2", "b2"]
    inputs = {"x": x, "student_weight": w, "student_bias": bias, "teachers": zt, "labels": y}
    inputs.update({f"logits_{n}": p.detach() for n, p in zip(names, phi)})
    exp = {"student_logits": zs, "w_logits": w_l, "kl": kl, "l_match": l_match,
           "grad_theta_weight": g_theta[0], "grad_theta_bias": g_theta[1],
           "theta1_weight": theta1[0], "theta1_bias": theta1[1], "l_out": l_out}
    exp.update({f"dphi_{n}": gd for n, gd in zip(names, dphi)})
    exp.update({f"dphi_formula_{n}": gd for n, gd in zip(names, dphi_formula)})
    params = {"T": t, "lr": lr, "alpha": 1.0, "momentum": 0.0, "weight_decay": 0.0,
              "student": "z_s = x·Wᵀ + b", "l_out": "mean CE(z_s(θ'), y) on the same batch",
              "logits_net_student_input": "detached z_s(θ)"}
    return case(params, inputs, exp)


# --- MGD (§4.2.3) ------------------------------------------------------------------------------

def case_mgd():
    """§4.2.3: L_encA = T_A²·KL (T_A = 2) and L_encD = T_D²·KL (T_D = 8) on encoder outputs
    (batchmean; widths 6 and 10 here instead of 64 and 256), MAS target z̄ = (z_t + z_A + z_D)/3
    with its T = 4 KD, and MAG's T = 4 KD with z_t."""
    t, ta, td = 4.0, 2.0, 8.0
    b, c, wa, wd = 4, 5, 6, 10
    g = gen(118)
    ea_t, ea_s = rnd(g, b, wa, scale=2.0), rnd(g, b, wa, scale=2.0)
    ed_t, ed_s = rnd(g, b, wd, scale=3.0), rnd(g, b, wd, scale=3.0)
    zt, za, zd, zs = (rnd(g, b, c, scale=2.5) for _ in range(4))
    zbar = (zt + za + zd) / 3.0
    exp = {"l_enc_a": kd_per_sample(ea_s, ea_t, ta).mean(), "l_enc_d": kd_per_sample(ed_s, ed_t, td).mean(),
           "z_bar": zbar, "mas_kd": kd_per_sample(zs, zbar, t).mean(), "mag_kd": kd_per_sample(zs, zt, t).mean()}
    inputs = {"enc_a_teacher": ea_t, "enc_a_student": ea_s, "enc_d_teacher": ed_t, "enc_d_student": ed_s,
              "teacher": zt, "teacher_a": za, "teacher_d": zd, "student": zs}
    params = {"T": t, "T_A": ta, "T_D": td, "enc_a_width": wa, "enc_d_width": wd, "reduction": "batchmean"}
    return case(params, inputs, exp)


# --- DE-MKD (§4.3) -----------------------------------------------------------------------------

def case_de_mkd():
    """§4.3 [INFERRED spec]: per-teacher DKD parts (§2.3), teacher entropies, entropy → weight
    maps and L_DE = (1/B)·Σ_i Σ_k [α·w^TC_k(i)·TCKD_k(i) + β·w^NC_k(i)·NCKD_k(i)]."""
    t, t_h, tau, alpha, beta = 4.0, 1.0, 1.0, 1.0, 8.0
    zs, zt, y = multi_teacher_inputs(119)
    k, b = zt.shape[:2]
    tckd, nckd = dkd_stack(zs, zt, y, t)

    # entropy_source=full: H(softmax(z_k/T_H)).
    h_full = entropy(F.softmax(zt / t_h, dim=-1))
    # entropy_source=decoupled, at the same entropy temperature T_H: binary [p_g, 1 − p_g] and the
    # renormalised non-target distribution.
    h_tc = torch.stack([entropy(binary_probs(z, y, t_h)) for z in zt])
    h_nc = torch.stack([entropy(non_target_log_probs(z, y, t_h).exp()) for z in zt])

    def softmax_neg(h):
        return F.softmax(-h / tau, dim=0)

    def softmax_pos(h):  # invert_nc=true: NC weights favour the higher non-target entropy
        return F.softmax(h / tau, dim=0)

    def ebkd_map(h):
        return (1.0 - h / h.sum(0, keepdim=True)) / (k - 1)

    def l_de(w_tc, w_nc):
        return (alpha * w_tc * tckd + beta * w_nc * nckd).sum() / b

    w_full_sn = softmax_neg(h_full)
    w_tc_dec, w_nc_dec = softmax_neg(h_tc), softmax_neg(h_nc)
    w_full_eb = ebkd_map(h_full)
    w_nc_full_inv, w_nc_dec_inv = softmax_pos(h_full), softmax_pos(h_nc)
    for w in (w_full_sn, w_tc_dec, w_nc_dec, w_full_eb, w_nc_full_inv, w_nc_dec_inv):
        assert torch.allclose(w.sum(0), torch.ones(b), rtol=0, atol=1e-12)
    exp = {
        "tckd": tckd, "nckd": nckd,
        "entropy_full": h_full, "entropy_tc": h_tc, "entropy_nc": h_nc,
        "w_full_softmax_neg": w_full_sn,
        "w_tc_decoupled_softmax_neg": w_tc_dec, "w_nc_decoupled_softmax_neg": w_nc_dec,
        "w_full_ebkd": w_full_eb,
        "w_nc_full_softmax_neg_invert": w_nc_full_inv,
        "w_nc_decoupled_softmax_neg_invert": w_nc_dec_inv,
        "loss_full_softmax_neg": l_de(w_full_sn, w_full_sn),
        "loss_decoupled_softmax_neg": l_de(w_tc_dec, w_nc_dec),
        "loss_full_ebkd": l_de(w_full_eb, w_full_eb),
        "loss_full_softmax_neg_invert_nc": l_de(w_full_sn, w_nc_full_inv),
        "loss_decoupled_softmax_neg_invert_nc": l_de(w_tc_dec, w_nc_dec_inv),
    }
    params = {"T": t, "T_H": t_h, "tau": tau, "alpha": alpha, "beta": beta, "clamp": DKD_CLAMP,
              "decoupled_entropy_T": t_h,
              "softmax_neg": "w = softmax_k(-H/tau)",
              "ebkd": "w = (1 - H/sum_j H_j)/(K-1)",
              "invert_nc": "NC weights w_nc = softmax_k(+H/tau) (H = full or non-target entropy); TC weights unchanged",
              "full_source": "the same weights for the TC and NC terms"}
    return case(params, {"student": zs, "teachers": zt, "labels": y}, exp)


def case_sgd_nesterov():
    """torch.optim.SGD (its default foreach path, float32) over 10 steps on
    L = sum(0.5*c*p*p + b*p) per parameter, so each gradient is c*p + b. Momentum 0.9, Nesterov,
    weight decay 5e-4 on `w` and `v`, none on `s` (a quantization step), the learning rate
    changing every step; `unused` takes no gradient, so SGD must leave it untouched. Stored in
    float32 values; the Rust optimizer must agree within 1e-6 relative."""
    g = gen(61)
    start = {"w": rnd(g, 4, 3), "v": rnd(g, 5), "s": rnd_uniform(g, 1, low=0.05, high=0.2),
             "unused": rnd(g, 2, 2)}
    coef = {k: rnd_uniform(g, *t.shape, low=0.5, high=2.0) for k, t in start.items()}
    shift = {k: rnd(g, *t.shape) for k, t in start.items()}
    params = {k: t.clone().float().requires_grad_(True) for k, t in start.items()}
    lrs = [0.1 * (1.0 - k / 12.0) for k in range(10)]
    opt = torch.optim.SGD([{"params": [params["w"], params["v"]], "weight_decay": 5e-4},
                           {"params": [params["s"]], "weight_decay": 0.0},
                           {"params": [params["unused"]], "weight_decay": 5e-4}],
                          lr=lrs[0], momentum=0.9, nesterov=True)
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=False)
        loss = sum((0.5 * coef[k].float() * params[k] * params[k] + shift[k].float() * params[k]).sum()
                   for k in ("w", "v", "s"))
        loss.backward()
        opt.step()
    inputs = {**{f"start_{k}": t for k, t in start.items()}, **{f"coef_{k}": t for k, t in coef.items()},
              **{f"shift_{k}": t for k, t in shift.items()}, "lrs": torch.tensor(lrs, dtype=torch.float64)}
    expected = {k: t.detach() for k, t in params.items()}
    expected.update({f"momentum_{k}": opt.state[params[k]]["momentum_buffer"] for k in ("w", "v", "s")})
    return case({"momentum": 0.9, "weight_decay": 5e-4, "nesterov": True, "steps": len(lrs)}, inputs, expected)


# ---------------------------------------------------------------------------------------------

CASES = {
    "section_6_7": case_section_6_7,
    "ce": case_ce,
    "kd": case_kd,
    "kd_t1": case_kd_t1,
    "dkd": case_dkd,
    "aver": case_aver,
    "ebkd": case_ebkd,
    "ca_mkd_logits": case_ca_mkd_logits,
    "ca_mkd_features": case_ca_mkd_features,
    "aekd": case_aekd,
    "aekd_two_teacher": case_aekd_two_teacher,
    "aekd_two_teacher_interior": case_aekd_two_teacher_interior,
    "fitnets_mse": case_fitnets_mse,
    "embed": case_embed,
    "embed_convs": case_embed_convs,
    "convreg_down2": case_convreg_down2,
    "convreg_up2": case_convreg_up2,
    "convreg_shrink": case_convreg_shrink,
    "convreg_same": case_convreg_same,
    "mmkd_weights": case_mmkd_weights,
    "mmkd_hypergradient": case_mmkd_hypergradient,
    "mgd": case_mgd,
    "de_mkd": case_de_mkd,
    "sgd_nesterov": case_sgd_nesterov,
}


def dump(obj, indent=0):
    """JSON with one line per tensor (shape and data inline) and nested dicts indented."""
    pad = "  " * (indent + 1)
    if isinstance(obj, dict):
        if set(obj) == {"shape", "data"}:
            return json.dumps(obj, allow_nan=False)
        if not obj:
            return "{}"
        items = [f"{pad}{json.dumps(k)}: {dump(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    return json.dumps(obj, allow_nan=False)


def summary(name, c):
    def short(v):
        d = v["data"]
        return f"{d[0]:.6g}" if not v["shape"] else f"{v['shape']}"
    parts = [f"{k}={short(v)}" for k, v in c["expected"].items()]
    return f"{name:28s} " + ", ".join(parts)


def main():
    root = Path(__file__).resolve().parents[2]
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / DEFAULT_OUT
    torch.manual_seed(0)
    cases = {name: make() for name, make in CASES.items()}
    doc = {"generator": "scripts/py/golden_methods.py", "torch": torch.__version__, "cases": cases}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump(doc) + "\n")
    for name, c in cases.items():
        print(summary(name, c))
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(cases)} cases); §6.7 values match to {TOL_67}")


if __name__ == "__main__":
    main()
