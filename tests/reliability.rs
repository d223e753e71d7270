//! Reliability regressions (issue 13): a diverged run never passes and never replaces its last
//! good checkpoint, and the recipe cannot steer the output folder outside `out/`.

mod common;
use common::*;
use compress::host::HostRead;

/// The last checkpoint's epoch and whether every tensor of its state file is finite.
fn last_checkpoint(dir: &std::path::Path) -> Option<(u64, bool)> {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("last.json")).ok()?).ok()?;
    let state = dir.join(meta["state_file"].as_str()?);
    let finite = tch::Tensor::read_safetensors(state).ok()?.iter().all(|(_, t)| !t.is_floating_point() || t.isfinite().all().read_i64() == 1);
    Some((meta["epoch"].as_u64()?, finite))
}

#[test]
fn a_diverged_run_stops_with_exit_3_and_exports_nothing() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[]", "none")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--set", "train.optimizer.sgd.lr=1e6"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("diverged in epoch 1") && r.stderr.contains("train.optimizer.sgd.lr"), "{}", r.stderr);
    let out = dir.path().join("out/tiny");
    assert!(!out.join("student.onnx").exists() && !out.join("report.json").exists(), "nothing may look finished");
    assert!(last_checkpoint(&out.join("checkpoints/distill")).is_none(), "no checkpoint of a diverged epoch");
}

#[test]
fn divergence_in_a_later_epoch_keeps_the_last_good_checkpoint() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // Epoch 1 trains at 0.05; from epoch 2 the rate is multiplied by 1e9.
    let recipe = tiny_recipe("[]", "none").replace(
        "train: {epochs: 1, batch_size: 32, threads: 2}",
        "train: {epochs: 3, batch_size: 32, threads: 2, schedule: {step: {milestones: [1], gamma: 1.0e9}}}",
    );
    std::fs::write(dir.path().join("r.yaml"), recipe).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("diverged in epoch 2"), "{}", r.stderr);
    let out = dir.path().join("out/tiny");
    assert_eq!(last_checkpoint(&out.join("checkpoints/distill")), Some((1, true)), "epoch 1's checkpoint stays, finite");
    assert!(!out.join("student.onnx").exists());
}

#[test]
fn a_nan_temperature_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[]", "none")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--dry-run", "--set", "distill.temperature=.nan"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("distill.temperature"), "{}", r.stderr);
}

#[test]
fn the_recipe_name_cannot_leave_the_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    for name in ["../../escaped", "/tmp/absolute", "a/b", "..", ".hidden", ""] {
        let recipe = tiny_recipe("[]", "none").replace("name: tiny", &format!("name: '{name}'"));
        std::fs::write(dir.path().join("work/r.yaml"), recipe).unwrap();
        let r = run_in(&dir.path().join("work"), &["--recipe", "r.yaml", "--dry-run"]);
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(r.stderr.contains("name: `"), "{name}: {}", r.stderr);
    }
    assert!(!dir.path().join("escaped").exists() && !dir.path().join("work/out").exists());
}

#[test]
fn a_dry_run_refuses_out_of_range_numbers_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[]", "none")).unwrap();
    let cases = [
        ("student.width=0", "student.width"),
        ("student.width=-1", "student.width"),
        ("student.width=.nan", "student.width"),
        ("student.width=.inf", "student.width"),
        ("train.threads=100000", "train.threads"),
        ("train.threads=9223372036854775807", "train.threads"),
        ("data.synthetic.train_size=1000000000", "data.synthetic"),
        ("data.image_size=10000", "data.image_size"),
        ("validate.gates.0.min=.nan", "validate.gates[0]"),
        ("train.optimizer.sgd.momentum=1.5", "train.optimizer.sgd.momentum"),
        ("distill.loss_weights.ce=-1", "distill.loss_weights.ce"),
        ("data.augment.random_crop_padding=9223372036854775807", "data.augment.random_crop_padding"),
        ("quantize.lr=.nan", "quantize.lr"),
        ("quantize.latency.threads=[100000]", "quantize.latency.threads"),
    ];
    for (set, key) in cases {
        let r = run_in(dir.path(), &["--recipe", "r.yaml", "--dry-run", "--set", set]);
        assert_eq!(r.code, 2, "{set}: {}", r.stderr);
        assert!(r.stderr.contains(key), "{set}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{set}: {}", r.stderr);
    }
}

#[test]
fn out_into_a_folder_of_the_users_never_replaces_their_files() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[]", "none")).unwrap();
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("student.onnx"), b"my own model").unwrap();
    std::fs::write(mine.join("notes.txt"), b"my notes").unwrap();
    let run = |extra: &[&str]| run_in(dir.path(), &[&["--recipe", "r.yaml", "--out", "mine"], extra].concat());

    let r = run(&[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("student.onnx"), "{}", r.stderr);
    let r = run(&["--overwrite"]);
    assert_eq!(r.code, 2, "a file of the user's is never replaced: {}", r.stderr);
    assert_eq!(std::fs::read(mine.join("student.onnx")).unwrap(), b"my own model");

    std::fs::remove_file(mine.join("student.onnx")).unwrap();
    let r = run(&[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("notes.txt") && r.stderr.contains("--overwrite"), "{}", r.stderr);
    let r = run(&["--overwrite"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(mine.join("student.onnx").is_file() && mine.join("report.json").is_file());

    // The tool's own files are replaced, the user's stay, even inside checkpoints/.
    std::fs::create_dir_all(mine.join("checkpoints/mydata")).unwrap();
    std::fs::write(mine.join("checkpoints/mydata/thesis.tex"), b"chapter 1").unwrap();
    let r = run(&["--overwrite"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read(mine.join("notes.txt")).unwrap(), b"my notes");
    assert_eq!(std::fs::read(mine.join("checkpoints/mydata/thesis.tex")).unwrap(), b"chapter 1");
}

#[test]
fn a_second_run_into_a_busy_folder_is_refused() {
    use std::os::unix::io::AsRawFd;
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[]", "none")).unwrap();
    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    // Another run holds the folder's lock.
    let held = std::fs::File::create(busy.join(".compress.lock")).unwrap();
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "busy"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("in use by another compress run"), "{}", r.stderr);
    assert!(!busy.join("student.onnx").exists());
    drop(held);
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "busy"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_write_that_fails_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // The target is a folder: the rename fails after the temporary was written.
    std::fs::create_dir(dir.path().join("report.json")).unwrap();
    std::fs::write(dir.path().join("report.json/keep"), b"x").unwrap();
    assert!(compress::fsio::write_atomic(&dir.path().join("report.json"), b"{}").is_err());
    let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["report.json".to_string()]);
}

#[test]
fn recipes_that_are_not_regular_files_or_nest_too_deep_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yaml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let deep = format!("version: 1\nname: x\ndata: {}1{}\n", "[".repeat(5000), "]".repeat(5000));
    std::fs::write(dir.path().join("deep.yaml"), deep).unwrap();
    for (args, what) in [
        (vec!["--recipe", "/dev/zero"], "not a regular file"),
        (vec!["--recipe", "fifo.yaml"], "not a regular file"),
        (vec!["inspect", "/dev/zero"], "not a regular file"),
        (vec!["inspect", "fifo.yaml"], "not a regular file"),
        (vec!["--recipe", "deep.yaml"], "deeper than"),
    ] {
        let started = std::time::Instant::now();
        let r = run_in(dir.path(), &args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(what), "{args:?}: {}", r.stderr);
        assert!(started.elapsed().as_secs() < 20, "{args:?} took {:?}", started.elapsed());
    }
}

#[test]
fn recipe_type_errors_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[]", "none")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--dry-run", "--set", "train.batch_size=.nan"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("train.batch_size:"), "{}", r.stderr);
    // Without --set the line is named too.
    std::fs::write(dir.path().join("t.yaml"), tiny_recipe("[]", "none").replace("epochs: 1", "epochs: three")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "t.yaml", "--dry-run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("train.epochs:") && r.stderr.contains("line 13"), "{}", r.stderr);
}

#[test]
fn a_teacher_libtorch_rejects_is_bad_input_naming_the_node() {
    use compress::graph::{Dim, Graph, ValueDecl};
    use onnx_protobuf::NodeProto;
    let dir = tempfile::tempdir().unwrap();
    let mut conv = NodeProto::new();
    conv.op_type = "Conv".into();
    conv.name = "mismatched_conv".into();
    conv.input = vec!["x".into(), "w".into()];
    conv.output = vec!["y".into()];
    let mut flat = NodeProto::new();
    flat.op_type = "GlobalAveragePool".into();
    flat.name = "pool".into();
    flat.input = vec!["y".into()];
    flat.output = vec!["logits".into()];
    // The weight expects 5 input channels; images have 3.
    let g = Graph {
        name: "bad".into(),
        opset: 13,
        producer: "test".into(),
        inputs: vec![ValueDecl { name: "x".into(), elem_type: 1, dims: vec![Dim::Symbolic("N".into()), Dim::Fixed(3), Dim::Fixed(32), Dim::Fixed(32)] }],
        outputs: vec![ValueDecl { name: "logits".into(), elem_type: 1, dims: vec![] }],
        initializers: vec![("w".into(), tch::Tensor::zeros([10, 5, 3, 3], (tch::Kind::Float, tch::Device::Cpu)))],
        nodes: vec![conv, flat],
        metadata: vec![],
    };
    compress::onnx::model_file::write(&g.to_model(8).unwrap(), &dir.path().join("bad.onnx")).unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[{name: bad, onnx: bad.onnx, input: {layout: nchw}}]", "kd")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--dry-run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("teachers[0]") && r.stderr.contains("mismatched_conv"), "{}", r.stderr);
}

/// A one-input graph whose nodes produce `out`, written to `dir/name`.
fn write_model(
    dir: &std::path::Path,
    name: &str,
    input: Vec<compress::graph::Dim>,
    nodes: Vec<onnx_protobuf::NodeProto>,
    inits: Vec<(&str, tch::Tensor)>,
    out: &str,
) -> onnx_protobuf::ModelProto {
    use compress::graph::{Graph, ValueDecl};
    let g = Graph {
        name: "m".into(),
        opset: 13,
        producer: "test".into(),
        inputs: vec![ValueDecl { name: "x".into(), elem_type: 1, dims: input }],
        outputs: vec![ValueDecl { name: out.into(), elem_type: 1, dims: vec![] }],
        initializers: inits.into_iter().map(|(n, t)| (n.to_string(), t)).collect(),
        nodes,
        metadata: vec![],
    };
    let model = g.to_model(8).unwrap();
    compress::onnx::model_file::write(&model, &dir.join(name)).unwrap();
    model
}

fn op(op: &str, inputs: &[&str], out: &str, attrs: Vec<onnx_protobuf::AttributeProto>) -> onnx_protobuf::NodeProto {
    let mut n = onnx_protobuf::NodeProto::new();
    n.op_type = op.into();
    n.name = format!("{out}_node");
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![out.into()];
    n.attribute = attrs;
    n
}

#[test]
fn malformed_models_are_bad_input_not_panics() {
    use compress::graph::Dim::Fixed;
    use compress::onnx::attr::{int, ints};
    use tch::{Device, Kind, Tensor};
    let dir = tempfile::tempdir().unwrap();
    let w = || Tensor::zeros([4, 3, 3, 3], (Kind::Float, Device::Cpu));
    write_model(dir.path(), "conv_rank1.onnx", vec![Fixed(12)], vec![op("Conv", &["x", "w"], "y", vec![])], vec![("w", w())], "y");
    write_model(
        dir.path(),
        "conv_strides.onnx",
        vec![Fixed(1), Fixed(3), Fixed(8), Fixed(8)],
        vec![op("Conv", &["x", "w"], "y", vec![ints("strides", &[0, 0])])],
        vec![("w", w())],
        "y",
    );
    write_model(
        dir.path(),
        "flatten_axis.onnx",
        vec![Fixed(1), Fixed(3), Fixed(8), Fixed(8)],
        vec![op("Flatten", &["x"], "y", vec![int("axis", 7)])],
        vec![],
        "y",
    );
    write_model(dir.path(), "huge_input.onnx", vec![Fixed(1), Fixed(3), Fixed(8000), Fixed(8000)], vec![op("Relu", &["x"], "y", vec![])], vec![], "y");
    let mut negative = write_model(
        dir.path(),
        "neg.onnx",
        vec![Fixed(1), Fixed(4)],
        vec![op("Add", &["x", "b"], "y", vec![])],
        vec![("b", Tensor::zeros([1, 4], (Kind::Float, Device::Cpu)))],
        "y",
    );
    negative.graph.as_mut().unwrap().initializer[0].dims = vec![-1, -4];
    compress::onnx::model_file::write(&negative, &dir.path().join("neg.onnx")).unwrap();
    let mut overflow = negative.clone();
    overflow.graph.as_mut().unwrap().initializer[0].dims = vec![i64::MAX, 4];
    compress::onnx::model_file::write(&overflow, &dir.path().join("overflow.onnx")).unwrap();
    for (file, what) in [
        ("conv_rank1.onnx", "conv_rank1"),
        ("conv_strides.onnx", "strides"),
        ("flatten_axis.onnx", "axis 7"),
        ("huge_input.onnx", "COMPRESS_MAX_INPUT_VALUES"),
        ("neg.onnx", "negative"),
        ("overflow.onnx", "negative"),
    ] {
        let started = std::time::Instant::now();
        let r = run_in(dir.path(), &["inspect", file]);
        assert_eq!(r.code, 2, "{file}: {}", r.stderr);
        assert!(r.stderr.contains(what) || r.stderr.contains("y_node"), "{file}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked") && !r.stderr.contains("Internal torch error"), "{file}: {}", r.stderr);
        assert!(started.elapsed().as_secs() < 20, "{file} took {:?}", started.elapsed());
    }
}

#[test]
fn a_range_whose_bounds_disagree_with_its_step_is_empty() {
    use compress::graph::Dim::Fixed;
    use tch::{Device, Kind, Tensor};
    let dir = tempfile::tempdir().unwrap();
    // Range(5, 0, 1) is empty in ONNX; its sum (0) is added to x.
    let scalar = |v: f32| Tensor::from(v).to_kind(Kind::Float).to_device(Device::Cpu);
    write_model(
        dir.path(),
        "range.onnx",
        vec![Fixed(1), Fixed(3)],
        vec![op("Range", &["s", "l", "d"], "r", vec![]), op("ReduceSum", &["r"], "z", vec![]), op("Add", &["x", "z"], "y", vec![])],
        vec![("s", scalar(5.0)), ("l", scalar(0.0)), ("d", scalar(1.0))],
        "y",
    );
    let r = run_in(dir.path(), &["inspect", "range.onnx", "--verify", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    for run in v["verify"]["runs"].as_array().unwrap() {
        assert_eq!(run["outputs"][0]["max_abs_diff"].as_f64(), Some(0.0), "{}", v["verify"]);
    }
}

#[test]
fn external_data_is_read_by_range_not_whole() {
    let dir = tempfile::tempdir().unwrap();
    // A ResNet-8 whose weights lie at the end of a sparse 4 GiB file (no disk used): reading the
    // whole file for each of its tensors would take gigabytes and minutes.
    tch::manual_seed(5);
    let spec = compress::zoo::ArchSpec { num_classes: 10, width: 0.25, image_size: 32 };
    let mut model = compress::zoo::build("resnet8", &spec, tch::Device::Cpu).unwrap().to_model(8).unwrap();
    let start: u64 = 4 << 30;
    let blob = move_to_external(&mut model, "weights.bin", start);
    let file = std::fs::File::create(dir.path().join("weights.bin")).unwrap();
    file.set_len(start).unwrap();
    drop(file);
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.path().join("weights.bin")).unwrap();
    std::io::Write::write_all(&mut f, &blob).unwrap();
    compress::onnx::model_file::write(&model, &dir.path().join("m.onnx")).unwrap();
    let started = std::time::Instant::now();
    let r = run_in(dir.path(), &["inspect", "m.onnx"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(started.elapsed().as_secs() < 30, "took {:?}", started.elapsed());
    // The largest child of this test process (every compress run here) stayed far below 4 GiB.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    assert!(usage.ru_maxrss < 2 << 20, "a child peaked at {} KiB", usage.ru_maxrss);
}

#[test]
fn an_interrupted_overwrite_leaves_nothing_of_the_previous_run() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), tiny_recipe("[]", "none")).unwrap();
    let out = dir.path().join("out/tiny");
    let r = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for f in ["student.onnx", "report.json", "report.md", "recipe.resolved.yaml"] {
        assert!(out.join(f).is_file(), "{f} of the first run");
    }
    // The overwrite trains long enough to be killed after its first checkpoint.
    let first_marker_kept = out.join("checkpoints/distill/last.json").is_file();
    assert!(first_marker_kept, "a finished run keeps its last checkpoint");
    let mut child = bin()
        .args(["--recipe", "r.yaml", "--overwrite", "--set", "train.epochs=40"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first run's checkpoints stay after it finished: wait for the overwrite's own (a file
    // written later; the clearing comes before it).
    let marker = out.join("checkpoints/distill/last.json");
    let written = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let first = written(&marker);
    let started = std::time::Instant::now();
    while written(&marker).is_none_or(|t| Some(t) == first) {
        assert!(child.try_wait().unwrap().is_none(), "the overwrite ended before it could be killed");
        assert!(started.elapsed().as_secs() < 120, "no checkpoint after 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Only the new run's checkpoints (and the tool's bookkeeping) are there: no old model,
    // report or resolved recipe that a CI step could mistake for this run's.
    let mut left: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, [".compress-manifest.json", ".compress.lock", "checkpoints"]);
    // It continues as an interrupted run.
    let r = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("interrupted run") && r.stderr.contains("--resume"), "{}", r.stderr);
}
