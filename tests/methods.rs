//! Every distillation method trains a student end to end through the real binary (two epochs, so
//! the feature terms that start in epoch 2 run too), logs its named loss terms and teacher
//! weights, and exports a model ONNX Runtime agrees with; misconfigured methods are refused by key
//! before any work.

mod common;
use common::*;
use serde_json::Value;

const ONE: &str = "[{name: t1, onnx: t1.onnx, input: {layout: nchw}}]";
const TWO: &str = "[{name: t1, onnx: t1.onnx, input: {layout: nchw}}, {name: t2, onnx: t2.onnx, input: {layout: nchw}}]";

/// The run, its report.json and its report.md.
fn run_method(distill: &str, teachers: &str) -> (Run, Option<Value>, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    write_resnet8_teacher(&dir.path().join("t1.onnx"), 1);
    write_resnet8_teacher(&dir.path().join("t2.onnx"), 2);
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe(teachers, distill)).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--set", "train.epochs=2"]);
    let report = std::fs::read(dir.path().join("out/tiny/report.json")).ok().map(|b| serde_json::from_slice(&b).unwrap());
    let markdown = std::fs::read_to_string(dir.path().join("out/tiny/report.md")).ok();
    (r, report, markdown)
}

#[test]
fn every_method_trains_and_exports() {
    let _serial = one_training_at_a_time();
    // (distill section, teachers, loss terms it logs, whether it reports teacher weights)
    let cases: &[(&str, &str, &[&str], bool)] = &[
        ("kd", ONE, &["ce", "kd"], false),
        ("fitnets", ONE, &["ce", "feat"], false),
        ("dkd, dkd: {warmup_epochs: 2}", ONE, &["ce", "tckd", "nckd"], false),
        ("aver", TWO, &["ce", "kd"], true),
        ("fitnet_mkd", TWO, &["ce", "kd", "feat"], true),
        ("ebkd", TWO, &["ce", "kd"], true),
        ("aekd", TWO, &["ce", "kd"], true),
        ("ca_mkd", TWO, &["ce", "kd", "feat"], true),
        (
            "ca_mkd, ca_mkd: {detach_feature_weights: true}, features: [{student: stage3, teacher: last_stage, connector: embed3}]",
            TWO,
            &["ce", "kd", "feat"],
            true,
        ),
        ("de_mkd", TWO, &["ce", "kd", "feat"], true),
        ("de_mkd, de_mkd: {entropy_source: decoupled, invert_nc: true}, loss_weights: {feat: 0}", TWO, &["ce", "kd"], true),
        ("mmkd", TWO, &["ce", "kd", "feat"], true),
        ("mgd, mgd: {head_epochs: 2}", TWO, &["ce", "kd", "enc"], true),
        ("mgd, mgd: {mode: mag, head_epochs: 1}", ONE, &["ce", "kd", "enc"], true),
        ("mmkd, mmkd: {unroll: 3, hard_buffer: false, meta_freq: 2, normalize_gram: true}", TWO, &["ce", "kd", "feat"], true),
    ];
    let mut syncing = Vec::new();
    for &(distill, teachers, terms, weighted) in cases {
        let (r, report, markdown) = run_method(distill, teachers);
        assert_eq!(r.code, 0, "{distill}: {}", r.stderr);
        let report = report.unwrap();
        let epochs = report["training"]["epochs"].as_array().unwrap();
        // No step after the first reads a tensor's values back to the host (on a GPU each read
        // would wait for the device).
        let reads: Vec<u64> = epochs.iter().map(|e| e["host_reads"].as_u64().unwrap()).collect();
        if reads.iter().any(|&n| n > 0) {
            syncing.push(format!("{distill}: {reads:?}"));
        }
        assert_eq!(epochs.len(), 2, "{distill}");
        let logged: Vec<&str> = epochs[1]["losses"].as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = terms.to_vec();
        want.sort();
        assert_eq!(logged, want, "{distill}");
        if terms.contains(&"feat") {
            assert!(epochs[1]["losses"]["feat"].as_f64().unwrap() > 0.0, "{distill}: the feature term runs in epoch 2");
        }
        let w = &epochs[1]["teacher_weights"];
        assert_eq!(w.is_array(), weighted, "{distill}: {w}");
        if weighted {
            let w: Vec<f64> = w.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(w.len(), if teachers == ONE { 1 } else { 2 }, "{distill}");
            let share: f64 = epochs[1]["teacher_top_share"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
            assert!((share - 1.0).abs() < 1e-6, "{distill}: top shares sum to 1, got {share}");
        }
        if distill.starts_with("mmkd") {
            // The feature level is reported like the logit level: weights, each teacher's
            // feature loss, both weight networks' meta-gradient norms.
            let e = &epochs[1];
            assert_eq!(e["feature_weights"].as_array().map(Vec::len), Some(2), "{distill}: {e}");
            assert!(e["feature_losses"].as_array().unwrap().iter().all(|v| v.as_f64().unwrap() > 0.0), "{distill}: {e}");
            for figure in ["logit_net_meta_grad_norm", "feature_net_meta_grad_norm"] {
                assert!(e["method_figures"][figure].as_f64().is_some_and(|v| v.is_finite() && v >= 0.0), "{distill}: {figure} in {e}");
            }
            assert!((0.0..=1.0).contains(&e["feature_weight_peaked"].as_f64().unwrap()), "{distill}: {e}");
            let md = markdown.as_deref().unwrap_or_default();
            assert!(md.contains("| feature level |") && md.contains("feature_net_meta_grad_norm"), "{distill}: {md}");
        }
        if weighted {
            assert!((0.0..=1.0).contains(&epochs[1]["teacher_weight_peaked"].as_f64().unwrap()), "{distill}");
        }
        assert!(report["fidelity"]["max_rel_diff"].as_f64().unwrap() <= 1e-4, "{distill}");
        if distill.starts_with("mgd") {
            let heads = report["training"]["method_summary"]["self_analyzing"].as_array().unwrap();
            assert_eq!(heads.len(), if teachers == ONE { 1 } else { 2 }, "{distill}");
            assert!(heads[0]["branch_a_top1"].as_f64().unwrap() >= 0.0, "{distill}");
        }
    }
    assert!(syncing.is_empty(), "host reads in the training step, per epoch:\n{}", syncing.join("\n"));
}

#[test]
fn misconfigured_methods_are_refused_by_key() {
    let _serial = one_training_at_a_time();
    let cases: &[(&str, &str, &str)] = &[
        ("dkd", TWO, "distils exactly one teacher"),
        ("aver, dkd: {beta: 2}", TWO, "distill.dkd"),
        ("aver, loss_weights: {feat: 5}", TWO, "distill.loss_weights.feat"),
        ("aekd, aekd: {c_tol: 0.4}", TWO, "distill.aekd.c_tol"),
        ("fitnets, features: [{student: stage9, teacher: stage2}]", ONE, "stage9"),
        ("fitnets, features: [{student: stage2, teacher: stage7}]", ONE, "stage7"),
        ("fitnets, features: [{student: pooled, teacher: stage2}]", ONE, "feature map"),
        ("mystery", ONE, "unknown method `mystery`"),
        ("mmkd, mmkd: {unroll: 2}", TWO, "distill.mmkd.unroll"),
    ];
    for &(distill, teachers, needle) in cases {
        let (r, report, _) = run_method(distill, teachers);
        assert_eq!(r.code, 2, "{distill}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{distill}: {}", r.stderr);
        assert!(report.is_none(), "{distill}: nothing is written");
        assert!(!r.stderr.contains("top-1"), "{distill}: refused at the plan, before teachers are evaluated: {}", r.stderr);
    }
}
