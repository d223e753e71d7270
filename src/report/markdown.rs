//! `report.md`: the report as a page a person reads: verdict, teachers, student, fidelity,
//! the quantized file, gates, per-epoch metrics and stage times.

use super::{QuantizationRecord, Report, TrainingRecord};
use std::fmt::Write;

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let verdict = if r.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(s, "# {}: {verdict}\n", r.recipe);
    let v = &r.versions;
    let _ = writeln!(
        s,
        "compress {} · tch {} · libtorch {} (built for CUDA {}, {} device(s) visible) · ONNX Runtime {} · device `{}` · seed {}\n",
        v.compress, v.tch, v.libtorch, v.libtorch_cuda, v.cuda_devices, v.onnxruntime, r.device, r.seed
    );
    if !r.teachers.is_empty() {
        let _ = writeln!(s, "## Teachers\n\n| name | top-1 (our import) | top-1 (ONNX Runtime) | agreement | logits abs diff (mean / max) | execution | sha256 |\n|---|---|---|---|---|---|---|");
        for t in &r.teachers {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.1e} / {:.1e} | {} | `{}…` |",
                t.name,
                pct(t.top1_tch),
                pct(t.top1_ort),
                pct(t.top1_agreement_tch_vs_ort),
                t.logits_mean_abs_diff_tch_vs_ort,
                t.logits_max_abs_diff_tch_vs_ort,
                t.execution,
                &t.sha256[..12]
            );
        }
        if let Some(e) = r.teacher_ensemble_top1 {
            let _ = writeln!(s, "\nEnsemble (mean probabilities): {}", pct(e));
        }
        if let Some(e) = r.teacher_majority_vote_top1 {
            let _ = writeln!(s, "Ensemble (majority vote): {}\n", pct(e));
        }
    }
    let _ = writeln!(s, "## Student\n");
    training_summary(&mut s, "distilled", &r.training);
    if let Some(b) = &r.baseline {
        training_summary(&mut s, "baseline (labels only)", b);
    }
    let f = &r.fidelity;
    let _ = writeln!(
        s,
        "\n## Exported model in ONNX Runtime\n\n{} test images: top-1 {} (tch {}), top-5 {}; top-1 agreement tch vs ORT {}; logits max abs diff {:.3e}, max rel diff {:.3e}\n",
        f.images, pct(f.top1_ort), pct(f.top1_tch), pct(f.top5_ort), pct(f.top1_agreement_tch_vs_ort), f.max_abs_diff, f.max_rel_diff
    );
    for e in &r.exported {
        let _ = writeln!(s, "- `{}`: {} bytes, opset {}, weights {}, sha256 `{}`", e.path, e.bytes, e.opset, e.weight_storage, e.sha256);
    }
    for c in &r.ort_format {
        let _ = writeln!(
            s,
            "- `{}` (ONNX Runtime format, written by ONNX Runtime from `{}`): top-1 {}, agreement with the .onnx {}, max abs diff {:.3e}",
            c.file.path,
            c.from,
            pct(c.top1),
            pct(c.top1_agreement_vs_onnx),
            c.max_abs_diff_vs_onnx
        );
    }
    if let Some(q) = &r.quantization {
        quantization(&mut s, q);
    }
    if !r.gates.is_empty() {
        let _ = writeln!(s, "\n## Gates\n\n| metric | rule | threshold | value | verdict |\n|---|---|---|---|---|");
        for g in &r.gates {
            let _ = writeln!(s, "| {} | {} | {:.4} | {:.4} | {} |", g.metric, g.rule, g.threshold, g.value, if g.passed { "pass" } else { "FAIL" });
        }
    }
    if !r.charts.is_empty() {
        let _ = writeln!(s, "\n## Charts\n");
        for c in &r.charts {
            let _ = writeln!(s, "![{}]({})\n", c.title, c.file);
        }
    }
    epochs(&mut s, &r.training);
    let _ = writeln!(s, "\n## Stages\n");
    for (name, secs) in &r.stages {
        let _ = writeln!(s, "- {name}: {secs:.1} s");
    }
    s
}

/// Per-teacher values joined with " / ", and " (peaked N%)" when the share is known.
fn per_teacher(values: &Option<Vec<f64>>, peaked: Option<f64>) -> String {
    let Some(v) = values else { return String::new() };
    let joined = v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(" / ");
    match peaked {
        Some(p) => format!("{joined} (peaked {:.0}%)", 100.0 * p),
        None => joined,
    }
}

/// The epochs table; a feature-level column (weights, per-teacher feature loss, meta-gradient
/// norms) when the method reports one.
fn epochs(s: &mut String, t: &TrainingRecord) {
    let feature = t.epochs.iter().any(|e| e.feature_weights.is_some() || !e.method_figures.is_empty());
    let extra = if feature { " feature level |" } else { "" };
    let _ = writeln!(
        s,
        "\n## Epochs ({})\n\n| epoch | lr | losses | train top-1 | test top-1 | teacher weights |{extra} seconds | waiting for data (s) |\n|---|---|---|---|---|---|{}---|---|",
        t.method,
        if feature { "---|" } else { "" }
    );
    for e in &t.epochs {
        let losses: Vec<String> = e.losses.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        let w = per_teacher(&e.teacher_weights, e.teacher_weight_peaked);
        let cell = if feature {
            let mut parts = Vec::new();
            if e.feature_weights.is_some() {
                parts.push(format!("weights {}", per_teacher(&e.feature_weights, e.feature_weight_peaked)));
            }
            if e.feature_losses.is_some() {
                parts.push(format!("loss {}", per_teacher(&e.feature_losses, None)));
            }
            parts.extend(e.method_figures.iter().map(|(k, v)| format!("{k} {v:.1e}")));
            format!(" {} |", parts.join("; "))
        } else {
            String::new()
        };
        let wait = match e.skipped_images {
            0 => format!("{:.2}", e.data_wait_seconds),
            n => format!("{:.2} ({n} bad images left out)", e.data_wait_seconds),
        };
        let _ = writeln!(
            s,
            "| {} | {:.5} | {} | {} | {} | {w} |{cell} {:.1} | {wait} |",
            e.epoch,
            e.lr,
            losses.join(", "),
            pct(e.train_top1),
            pct(e.test_top1),
            e.seconds
        );
    }
}

fn training_summary(s: &mut String, label: &str, t: &TrainingRecord) {
    let _ =
        writeln!(s, "- {label} (`{}`): best top-1 {} (epoch {}), final {} in {:.0} s", t.method, pct(t.best_top1), t.best_epoch, pct(t.final_top1), t.seconds);
}

fn quantization(s: &mut String, q: &QuantizationRecord) {
    let _ = writeln!(s, "\n## Quantized model (QDQ)\n");
    training_summary(s, "quantization-aware training", &q.training);
    if let Some(b) = &q.baseline {
        training_summary(s, "the same QAT on labels only", b);
    }
    let _ = writeln!(
        s,
        "\n| | float | quantized |\n|---|---|---|\n| top-1 in tch | {} | {} (fake quantization) |\n| top-1 in ONNX Runtime | {} | {} |\n| file | {} bytes | {} bytes ({:.2}× smaller) |",
        pct(q.top1_float_tch),
        pct(q.top1_fake_quant_tch),
        pct(q.top1_float_ort),
        pct(q.top1_quantized_ort),
        q.float_file_bytes,
        q.file.bytes,
        q.compression
    );
    for l in &q.latency {
        let _ =
            writeln!(s, "| latency, batch {}, {} thread(s) | {:.3} ms | {:.3} ms ({:.2}× faster) |", l.batch, l.threads, l.float_ms, l.quantized_ms, l.speedup);
    }
    let _ = writeln!(
        s,
        "\n{} test images; top-1 agreement fake-quant tch vs ONNX Runtime {}, float vs quantized file {}; logits max abs diff {:.3e}. Latency: ONNX Runtime on this CPU, median of {} interleaved rounds.\n",
        q.images,
        pct(q.top1_agreement_fake_quant_vs_ort),
        pct(q.top1_agreement_float_vs_quantized_ort),
        q.max_abs_diff_fake_quant_vs_ort,
        q.latency_rounds
    );
    if !q.padded_depthwise.is_empty() {
        let padded: Vec<String> = q.padded_depthwise.iter().map(|p| format!("{} {}→{}", p.node, p.channels, p.padded_to)).collect();
        let _ = writeln!(
            s,
            "Depthwise layers padded with zero channels to a multiple of {} for ONNX Runtime's int8 kernel (the file computes the same): {}.\n",
            crate::export::pad_depthwise::CHANNEL_BLOCK,
            padded.join(", ")
        );
    }
    if !q.integer_pools.is_empty() {
        let runs = q.runtime_ops.get("com.microsoft::QLinearGlobalAveragePool").copied().unwrap_or(0);
        let _ =
            writeln!(s, "Average pools quantized at their output: {}; ONNX Runtime runs {runs} as `QLinearGlobalAveragePool`.\n", q.integer_pools.join(", "));
    }
    let _ = writeln!(s, "{} of {} quantized layers run on integer kernels.\n\n| layer | op | weight bits | activation bits | weights stored as | ONNX Runtime kernel |\n|---|---|---|---|---|---|", q.integer_layers, q.layers.len());
    for l in &q.layers {
        let kernel = if l.integer_kernel { format!("`{}`", l.kernel) } else { format!("`{}` (float)", l.kernel) };
        let _ = writeln!(s, "| {} | {} | {} | {} | {} | {} |", l.node, l.op, l.weight_bits, l.activation_bits, l.weight_storage, kernel);
    }
}
