//! Bad recipes exit 2 with a message naming the key, file or node, before any training.

mod common;
use common::*;

#[test]
fn unknown_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_recipe("[]", "none").replace("train:", "trian: {epochs: 1}\ntrain:");
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("trian"), "{}", r.stderr);
    assert!(!dir.path().join("out").exists(), "nothing may be written for a bad recipe");
}

#[test]
fn unknown_override_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[]", "none")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--set", "train.epochz=3"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("epochz"), "{}", r.stderr);
}

#[test]
fn missing_teacher_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let teachers = "[{name: ghost, onnx: nowhere/ghost.onnx, input: {layout: nchw}}]";
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe(teachers, "ca_mkd")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("ghost.onnx") && r.stderr.contains("teachers[0]"), "{}", r.stderr);
}

#[test]
fn unsupported_ops_are_all_named_before_training() {
    use compress::graph::builder::GraphBuilder;
    let dir = tempfile::tempdir().unwrap();
    let mut b = GraphBuilder::new("odd", 13, 3, 32, tch::Device::Cpu);
    let x = b.input();
    let y = b.node("NotARealOp", "mystery_node", &[&x], vec![]);
    let z = b.node("AlsoNotReal", "second_mystery", &[&y], vec![]);
    let p = b.pool_flatten("pool", &z);
    let graph = b.finish(&p, 3);
    let model = graph.to_model(8).unwrap();
    compress::onnx::model_file::write(&model, &dir.path().join("odd.onnx")).unwrap();
    let teachers = "[{name: odd, onnx: odd.onnx, input: {layout: nchw}}]";
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe(teachers, "aver")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("mystery_node") && r.stderr.contains("NotARealOp"), "{}", r.stderr);
    assert!(r.stderr.contains("second_mystery"), "every unsupported node is listed: {}", r.stderr);
    assert!(!r.stderr.contains("epoch 1/"), "no training may start: {}", r.stderr);

    let inspect = run_in(dir.path(), &["inspect", "odd.onnx"]);
    assert_eq!(inspect.code, 2, "{}", inspect.stderr);
    assert!(inspect.stdout.contains("mystery_node"), "{}", inspect.stdout);
}

#[test]
fn missing_onnx_runtime_library_is_a_runtime_failure() {
    let model = shared().join("onnx/vnncomp21_cifar10_resnet_4b.onnx");
    let out = bin().args(["inspect", model.to_str().unwrap(), "--verify"]).env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.31.1").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("/nonexistent/libonnxruntime.so.1.31.1"), "{stderr}");
}

/// A teacher file written by the library: an untrained CIFAR ResNet-8 with `classes` outputs.
fn write_resnet8(path: &std::path::Path, classes: i64) {
    let spec = compress::zoo::ArchSpec { num_classes: classes, width: 0.5, image_size: 32 };
    let graph = compress::zoo::build("resnet8", &spec, tch::Device::Cpu).unwrap();
    compress::onnx::model_file::write(&graph.to_model(8).unwrap(), path).unwrap();
}

#[test]
fn unknown_tap_and_wrong_class_count_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_resnet8(&dir.path().join("ten.onnx"), 10);
    write_resnet8(&dir.path().join("seven.onnx"), 7);
    let teachers = "[{name: tapped, onnx: ten.onnx, input: {layout: nchw}, taps: {feat: no_such_value}}, \
                    {name: seven, onnx: seven.onnx, input: {layout: nchw}}]";
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe(teachers, "aver")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no_such_value") && r.stderr.contains("teachers[0]"), "{}", r.stderr);
    assert!(r.stderr.contains("predicts 7 classes") && r.stderr.contains("teachers[1]"), "{}", r.stderr);
}

#[test]
fn a_real_stage_tap_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    write_resnet8(&dir.path().join("t.onnx"), 10);
    let teachers = "[{name: tapped, onnx: t.onnx, input: {layout: nchw}, taps: {last: layer3.0.relu2}}]";
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe(teachers, "aver")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!dir.path().join("out/tiny/report.json").exists(), "a dry run writes no report");
}

#[test]
fn fp16_teacher_on_cpu_is_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    write_resnet8(&dir.path().join("t.onnx"), 10);
    let teachers = "[{name: half, onnx: t.onnx, input: {layout: nchw}, precision: fp16}]";
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe(teachers, "aver")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("teachers[0]") && r.stderr.contains("fp16"), "{}", r.stderr);
}

#[test]
fn batch_larger_than_the_training_set_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[]", "none")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--set", "train.batch_size=1000"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("train.batch_size"), "{}", r.stderr);
}

#[test]
fn a_gate_against_a_baseline_the_run_will_not_train_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_recipe("[]", "none").replace("  gates:\n", "  gates:\n    - {metric: top1, max_drop_vs: baseline, value: 0.0}\n");
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("validate.gates[0]") && r.stderr.contains("train.baseline"), "{}", r.stderr);
    assert!(!dir.path().join("out").exists(), "nothing may be written for a bad recipe");
}

#[test]
fn every_schema_problem_is_reported_at_once_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let text = "version: 1
name: many
data:
  format: synthetic
  synthetic: {num_classes: 10, train_size: 64, test_size: 32, seed: 1}
  normalize: {scale: 1/255, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
  workerz: 3
teachers:
  - name: a
    onnx: a.onnx
  - name: b
    onnx: b.onnx
  - name: c
    onnx: c.onnx
  - name: d
    onnx: d.onnx
    outputs: logits
    input: {scale: one}
student: {arch: resnet8}
distill: {method: none, temperature: hot}
train: {epochs: three, batch_size: 16}
";
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--dry-run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for expected in [
        "5 problems",
        "data.workerz: unknown field `workerz`",
        "(line 7, column 3)",
        "teachers[3].outputs: unknown field `outputs`",
        "(line 17, column 5)",
        "teachers[3].input.scale: expected a number or a fraction such as 1/255, got \"one\" (line 18, column 13)",
        "distill.temperature: invalid type: string \"hot\", expected f64 (line 20, column 25)",
        "train.epochs: invalid type: string \"three\", expected usize (line 21, column 9)",
    ] {
        assert!(r.stderr.contains(expected), "missing {expected:?} in:\n{}", r.stderr);
    }
    // `scale: 1/255` is accepted: no problem is reported for data.normalize.
    assert!(!r.stderr.contains("data.normalize"), "{}", r.stderr);

    // A problem a --set brings is blamed on the --set, not on a line of the file.
    let fixed = text
        .replace("  workerz: 3\n", "")
        .replace("    outputs: logits\n", "")
        .replace("{scale: one}", "{scale: 1/255}")
        .replace("temperature: hot", "temperature: 4")
        .replace("epochs: three", "epochs: 1");
    std::fs::write(dir.path().join("f.yaml"), fixed).unwrap();
    let r = run_in(dir.path(), &["--recipe", "f.yaml", "--dry-run", "--set", "train.epochs=abc", "--set", "teachers.1.output=soft"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("train.epochs: invalid type: string \"abc\", expected usize (from --set train.epochs=abc)"), "{}", r.stderr);
    assert!(
        r.stderr.contains("teachers[1].output: unknown variant `soft`, expected `logits` or `probabilities` (from --set teachers.1.output=soft)"),
        "{}",
        r.stderr
    );
}
