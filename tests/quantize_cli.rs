//! `quantize` recipes through the real binary: QAT after distillation, the QDQ file next to the
//! float one, and the report's figures; bad `quantize` sections exit 2 naming the key.

mod common;
use common::*;

fn quantize_recipe(dir: &std::path::Path, quantize: &str) -> String {
    write_resnet8_teacher(&dir.join("t.onnx"), 11);
    let teachers = "[{name: t, onnx: t.onnx, input: {layout: nchw, scale: 0.00392156862745098, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}]";
    let mut text = tiny_recipe(teachers, "kd");
    text.push_str(&format!("quantize: {quantize}\n"));
    text
}

#[test]
fn qat_after_distillation_writes_a_qdq_file_on_integer_kernels_and_reports_it() {
    let _one = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let recipe = quantize_recipe(
        dir.path(),
        "{weights: 4, activations: 8, epochs: 1, baseline: true, calibration_images: 64, latency: {rounds: 1, batches: [1, 4], threads: [1, 2]}}",
    )
    .replace("    - {metric: max_rel_diff_tch_vs_ort", "    - {metric: quantized_integer_layer_share, min: 1.0}\n    - {metric: max_rel_diff_tch_vs_ort");
    std::fs::write(dir.path().join("r.yaml"), recipe).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "o"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("qat: epoch 1/1") && r.stderr.contains("qat_baseline: epoch 1/1"), "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("o/report.json")).unwrap()).unwrap();
    let q = &report["quantization"];
    let layers = q["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 10, "ResNet-8: 9 convs and the classifier");
    assert_eq!(q["integer_layers"], 10, "{q:#}");
    // First and last layers at 8 bits, the rest W4A8 in int8 storage.
    assert_eq!((layers[0]["weight_bits"].as_u64(), layers[9]["weight_bits"].as_u64()), (Some(8), Some(8)));
    assert!(layers[1..9].iter().all(|l| l["weight_bits"] == 4 && l["activation_bits"] == 8 && l["weight_storage"] == "int4 grid in int8"));
    assert_eq!(layers[1]["kernel"], "com.microsoft::QLinearConv");
    assert_eq!(layers[9]["kernel"], "com.microsoft::QGemm");
    // Named after its widths (the design's `student.<bits>.onnx`).
    assert!(dir.path().join("o/student.w4a8.onnx").is_file());
    assert!(q["file"]["path"].as_str().unwrap().ends_with("student.w4a8.onnx"), "{}", q["file"]["path"]);
    assert_eq!(report["exported"].as_array().unwrap().len(), 2, "the float file and the quantized one");
    assert!(q["compression"].as_f64().unwrap() > 2.0, "{}", q["compression"]);
    assert!(q["top1_agreement_fake_quant_vs_ort"].as_f64().unwrap() >= 0.9, "{}", q["top1_agreement_fake_quant_vs_ort"]);
    assert_eq!(q["baseline"]["method"], "none");
    assert_eq!(q["training"]["method"], "kd");
    let latency = q["latency"].as_array().unwrap();
    assert_eq!(latency.len(), 4, "each batch size at each thread count");
    assert_eq!(
        latency.iter().map(|l| (l["threads"].as_u64().unwrap(), l["batch"].as_u64().unwrap())).collect::<Vec<_>>(),
        vec![(1, 1), (1, 4), (2, 1), (2, 4)]
    );
    assert!(latency.iter().all(|l| l["float_ms"].as_f64().unwrap() > 0.0 && l["quantized_ms"].as_f64().unwrap() > 0.0));
    let md = std::fs::read_to_string(dir.path().join("o/report.md")).unwrap();
    assert!(md.contains("## Quantized model (QDQ)") && md.contains("10 of 10 quantized layers run on integer kernels"), "{md}");

    // The float file of that run, quantized as given (no float epochs).
    let again = std::fs::read_to_string(dir.path().join("r.yaml"))
        .unwrap()
        .replace("student: {arch: resnet8, width: 0.5}", "student: {onnx: o/student.onnx, weights: stored}")
        .replace("train: {epochs: 1,", "train: {epochs: 0,");
    std::fs::write(dir.path().join("again.yaml"), again).unwrap();
    let r = run_in(dir.path(), &["--recipe", "again.yaml", "--out", "again"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no epochs; the student as given has test top-1"), "{}", r.stderr);
    let report2: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("again/report.json")).unwrap()).unwrap();
    assert_eq!(report2["training"]["final_top1"], report["fidelity"]["top1_tch"], "the same float student");
    assert_eq!(report2["quantization"]["integer_layers"], 10);

    // Replacing the run with one that does not quantize leaves no quantized file behind that
    // would pass for this run's.
    let plain =
        std::fs::read_to_string(dir.path().join("again.yaml")).unwrap().replace("quantize:", "# quantize:").replace("train: {epochs: 0,", "train: {epochs: 1,");
    std::fs::write(dir.path().join("plain.yaml"), plain.lines().filter(|l| !l.contains("quantized_")).collect::<Vec<_>>().join("\n")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "plain.yaml", "--out", "again", "--overwrite"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!dir.path().join("again/student.w4a8.onnx").exists());
}

#[test]
fn bad_quantize_sections_are_named_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("{weights: 3}", "quantize.weights: 3 bits is not supported (8, 4, 2)"),
        ("{activations: 2}", "quantize.activations: 2 bits is not supported (8, 4)"),
        ("{layers: {layer9.conv: {weights: 4}}}", "quantize.layers.layer9.conv: the student has no Conv or Gemm named `layer9.conv`"),
        ("{epochs: 0}", "quantize.epochs: must be positive"),
        ("{bits: 4}", "unknown field `bits`"),
    ];
    for (section, expected) in cases {
        std::fs::write(dir.path().join("r.yaml"), quantize_recipe(dir.path(), section)).unwrap();
        let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "o"]);
        assert_eq!(r.code, 2, "{section}: {}", r.stderr);
        assert!(r.stderr.contains(expected), "{section}: expected `{expected}` in {}", r.stderr);
        assert!(!r.stderr.contains("epoch 1/"), "no training may start: {}", r.stderr);
        assert!(!dir.path().join("o/report.json").exists());
    }
    // Quantized gates and zero float epochs need the section.
    let gate = tiny_recipe("[]", "none")
        .replace("    - {metric: max_rel_diff_tch_vs_ort", "    - {metric: quantized_top1, min: 0.5}\n    - {metric: max_rel_diff_tch_vs_ort");
    std::fs::write(dir.path().join("g.yaml"), gate).unwrap();
    let r = run_in(dir.path(), &["--recipe", "g.yaml", "--out", "o"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("validate.gates[1]: `quantized_top1` needs a `quantize` section"), "{}", r.stderr);
    let zero = tiny_recipe("[]", "none").replace("train: {epochs: 1,", "train: {epochs: 0,");
    std::fs::write(dir.path().join("z.yaml"), zero).unwrap();
    let r = run_in(dir.path(), &["--recipe", "z.yaml", "--out", "o"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("train.epochs must be positive"), "{}", r.stderr);
    // The QAT rate defaults to a fiftieth of the float one, and calibration needs images.
    std::fs::write(dir.path().join("r.yaml"), quantize_recipe(dir.path(), "{}")).unwrap();
    for (set, expected) in
        [("train.optimizer.sgd.lr=-1", "train.optimizer.sgd.lr must be a positive number"), ("data.train_subset=0", "data.train_subset must be positive")]
    {
        let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "o", "--set", set]);
        assert_eq!(r.code, 2, "{set}: {}", r.stderr);
        assert!(r.stderr.contains(expected), "{set}: expected `{expected}` in {}", r.stderr);
    }
}

#[test]
fn ort_format_copies_are_written_by_onnx_runtime_and_checked() {
    let _one = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let recipe =
        quantize_recipe(dir.path(), "{weights: 8, activations: 8, epochs: 1, calibration_images: 32, latency: {rounds: 1, batches: [1], threads: [1]}}")
            .replace("validate:", "export: {ort_format: true}\nvalidate:")
            .replace("    - {metric: max_rel_diff_tch_vs_ort", "    - {metric: ort_format_top1_agreement, min: 0.99}\n    - {metric: max_rel_diff_tch_vs_ort");
    std::fs::write(dir.path().join("r.yaml"), &recipe).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "o"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for name in ["student.ort", "student.w8a8.ort"] {
        let bytes = std::fs::read(dir.path().join("o").join(name)).unwrap();
        // A flatbuffer with ONNX Runtime's file identifier, not an ONNX protobuf.
        assert_eq!(&bytes[4..8], b"ORTM", "{name}");
    }
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("o/report.json")).unwrap()).unwrap();
    let checks = report["ort_format"].as_array().unwrap();
    assert_eq!(checks.len(), 2);
    for c in checks {
        assert!(c["top1_agreement_vs_onnx"].as_f64().unwrap() >= 0.99, "{c}");
        assert_eq!(c["file"]["weight_storage"], "ort_format");
    }
    assert!(report["exported"].as_array().unwrap().iter().any(|f| f["path"].as_str().unwrap().ends_with("student.w8a8.ort")));
    // A quantized run charts accuracy against size and latency; a teacher-weighted one its weights.
    let charts: Vec<&str> = report["charts"].as_array().unwrap().iter().map(|c| c["file"].as_str().unwrap()).collect();
    assert_eq!(charts, ["accuracy.png", "accuracy_size.png", "accuracy_latency.png"]);
    for c in charts {
        assert!(dir.path().join("o").join(c).is_file(), "{c}");
    }
    // The gate needs the copies.
    std::fs::write(dir.path().join("n.yaml"), recipe.replace("export: {ort_format: true}\n", "")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "n.yaml", "--dry-run"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("`ort_format_top1_agreement` needs export.ort_format: true"), "{}", r.stderr);
}
