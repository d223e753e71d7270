//! Data parallel through the binary, on libtorch's c10d (Gloo on the CPU): two processes launched
//! with the environment variables torchrun sets (and by torchrun itself) train as one process
//! with the same global batch, rank 0 alone writes, a rank that dies stops the other with an
//! error, and an interrupted two-process run resumes to the uninterrupted result.

mod common;
use common::*;
use compress::graph::builder::{ConvSpec, GraphBuilder};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A student without BatchNorm (conv, ReLU, conv, ReLU, pool, linear): its gradient on a batch is
/// the mean of its gradients on the batch's halves, so two ranks can match one process exactly.
fn write_plain_student(path: &Path) {
    tch::manual_seed(17);
    let mut b = GraphBuilder::new("plain", 13, 3, 32, tch::Device::Cpu);
    let x = b.input();
    let c1 = b.conv("conv1", &x, ConvSpec::new(3, 8, 3, 2).pad(1).bias());
    let r1 = b.relu("relu1", &c1);
    let c2 = b.conv("conv2", &r1, ConvSpec::new(8, 16, 3, 2).pad(1).bias());
    let r2 = b.relu("relu2", &c2);
    let p = b.pool_flatten("pool", &r2);
    let fc = b.linear("fc", &p, 16, 10);
    let graph = b.finish(&fc, 10);
    compress::onnx::model_file::write(&graph.to_model(8).unwrap(), path).unwrap();
}

/// Two resnet8 teachers, the plain student, AVER, `epochs` epochs of global batch 32.
fn recipe(dir: &Path, epochs: usize) -> String {
    for (i, seed) in [(1, 5), (2, 6)] {
        write_resnet8_teacher(&dir.join(format!("t{i}.onnx")), seed);
    }
    write_plain_student(&dir.join("plain.onnx"));
    let teachers = "[{name: t1, onnx: t1.onnx, input: {layout: nchw}}, {name: t2, onnx: t2.onnx, input: {layout: nchw}}]";
    tiny_recipe(teachers, "aver")
        .replace("student: {arch: resnet8, width: 0.5}", "student: {onnx: plain.onnx}")
        .replace("train: {epochs: 1,", &format!("train: {{epochs: {epochs}, optimizer: {{sgd: {{lr: 0.05}}}},"))
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Rank `rank` of `world` as a child process in `dir`, with `args`; stderr piped.
fn rank(dir: &Path, args: &[&str], rank: usize, world: usize, port: u16) -> Child {
    bin()
        .args(args)
        .current_dir(dir)
        .env("COMPRESS_CACHE_DIR", dir.join("cache"))
        .env("WORLD_SIZE", world.to_string())
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("COMPRESS_DIST_TIMEOUT", "60")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a child; its exit code and stderr.
fn finish(child: Child) -> (i32, String) {
    let o = child.wait_with_output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Runs ranks 0..world of `args` (rank `r` writing to `outs[r]`) to the end.
fn run_ranks(dir: &Path, outs: &[&str], extra: &[&str]) -> Vec<(i32, String)> {
    let port = free_port();
    let children: Vec<Child> = outs
        .iter()
        .enumerate()
        .map(|(r, out)| {
            let mut args = vec!["--recipe", "r.yaml", "--out", out];
            args.extend(extra);
            rank(dir, &args, r, outs.len(), port)
        })
        .collect();
    children.into_iter().map(finish).collect()
}

fn report(dir: &Path, out: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(out).join("report.json")).unwrap()).unwrap()
}

/// The exported student's initializers by name.
fn initializers(path: &Path) -> Vec<(String, Vec<f32>)> {
    let model = compress::onnx::model_file::read(path).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = model
        .graph
        .unwrap()
        .initializer
        .iter()
        .filter(|t| t.data_type == 1)
        .map(|t| {
            let values = if t.raw_data.is_empty() {
                t.float_data.clone()
            } else {
                t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            };
            (t.name.clone(), values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Two ranks with global batch 32 end with the parameters of one process with batch 32 (within
/// 1e-5 relative: the gradient of the whole batch is summed in another order), every epoch's
/// parameters checked equal across the ranks; only rank 0 writes, and the report says 2.
#[test]
fn two_ranks_train_as_one_process() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), recipe(dir.path(), 2)).unwrap();
    let single = run_in(dir.path(), &["--recipe", "r.yaml", "--out", "one"]);
    assert_eq!(single.code, 0, "{}", single.stderr);
    let ranks = run_ranks(dir.path(), &["two", "two-rank1"], &[]);
    for (r, (code, stderr)) in ranks.iter().enumerate() {
        assert_eq!(*code, 0, "rank {r}:\n{stderr}");
    }
    assert!(ranks[1].1.contains("rank 1 of 2 trained its share"), "{}", ranks[1].1);
    assert!(!ranks[1].1.contains("epoch 1/2"), "rank 1 prints no progress: {}", ranks[1].1);
    assert!(!dir.path().join("two-rank1").exists(), "rank 1 writes nothing");
    let (one, two) = (report(dir.path(), "one"), report(dir.path(), "two"));
    assert_eq!(one["training"]["world_size"], 1);
    assert_eq!(two["training"]["world_size"], 2);
    let (a, b) = (initializers(&dir.path().join("one/student.onnx")), initializers(&dir.path().join("two/student.onnx")));
    assert_eq!(a.iter().map(|p| &p.0).collect::<Vec<_>>(), b.iter().map(|p| &p.0).collect::<Vec<_>>());
    let start = initializers(&dir.path().join("plain.onnx"));
    let mut moved = 0.0f64;
    for ((name, x), ((_, y), (_, s))) in a.iter().zip(b.iter().zip(&start)) {
        let scale = x.iter().map(|v| v.abs()).fold(0.0f32, f32::max).max(1e-3) as f64;
        let worst = x.iter().zip(y).map(|(p, q)| (p - q).abs() as f64).fold(0.0, f64::max) / scale;
        assert!(worst < 1e-5, "{name}: 1 vs 2 ranks differ by {worst:.2e} relative");
        moved = moved.max(x.iter().zip(s).map(|(p, q)| (p - q).abs() as f64).fold(0.0, f64::max) / scale);
    }
    assert!(moved > 1e-3, "the training changed the parameters ({moved:.2e})");
    // The epochs' training losses are the whole batch's on both (summed across the ranks).
    let loss = |r: &Value| r["training"]["epochs"][1]["losses"]["kd"].as_f64().unwrap();
    assert!((loss(&one) - loss(&two)).abs() < 1e-4 * loss(&one).abs(), "{} vs {}", loss(&one), loss(&two));
}

/// A rank killed in the middle of training: the other stops with an error that names the
/// collective, within the timeout, and leaves no report.
#[test]
fn a_killed_rank_stops_the_other_with_an_error() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), recipe(dir.path(), 30)).unwrap();
    let port = free_port();
    let args = ["--recipe", "r.yaml", "--out", "o"];
    let mut zero = rank(dir.path(), &args, 0, 2, port);
    let mut one = rank(dir.path(), &args, 1, 2, port);
    // Rank 0 prints each epoch's line; after the first, rank 1 dies.
    let mut lines = BufReader::new(zero.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("epoch 1/30") {
            break;
        }
    }
    assert!(seen.contains("epoch 1/30"), "rank 0 never finished an epoch:\n{seen}");
    one.kill().unwrap();
    let _ = one.wait();
    let killed = Instant::now();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let code = zero.wait().unwrap().code();
    let text = format!("{seen}{}", rest.join("\n"));
    assert_eq!(code, Some(3), "{text}");
    assert!(killed.elapsed() < Duration::from_secs(60), "rank 0 took {:?} to notice", killed.elapsed());
    assert!(text.contains("rank 0 of 2") && (text.contains("allreduce") || text.contains("broadcast")), "{text}");
    assert!(!dir.path().join("o/report.json").exists());
}

/// Two ranks stopped after an epoch and resumed with `--resume` end where an uninterrupted
/// two-rank run ends: every epoch's figures equal.
#[test]
fn an_interrupted_two_rank_run_resumes_to_the_same_result() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), recipe(dir.path(), 3)).unwrap();
    let whole = run_ranks(dir.path(), &["whole", "whole-1"], &[]);
    assert!(whole.iter().all(|(c, _)| *c == 0), "{whole:?}");
    // The interrupted run: rank 0 is stopped once its first checkpoint is written, rank 1 then
    // fails (or is stopped) too.
    let port = free_port();
    let args = ["--recipe", "r.yaml", "--out", "cut"];
    let mut zero = rank(dir.path(), &args, 0, 2, port);
    let mut one = rank(dir.path(), &args, 1, 2, port);
    let checkpoint = dir.path().join("cut/checkpoints/distill/state-1.safetensors");
    let started = Instant::now();
    while !checkpoint.exists() && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    zero.kill().unwrap();
    one.kill().unwrap();
    let _ = (zero.wait(), one.wait());
    assert!(!dir.path().join("cut/report.json").exists(), "the run was stopped before its end");
    let resumed = run_ranks(dir.path(), &["cut", "cut-1"], &["--resume"]);
    assert!(resumed.iter().all(|(c, _)| *c == 0), "{resumed:?}");
    assert!(resumed[0].1.contains("resuming after epoch"), "{}", resumed[0].1);
    let (a, b) = (report(dir.path(), "whole"), report(dir.path(), "cut"));
    assert_eq!(epochs_without_time(&a["training"]["epochs"]), epochs_without_time(&b["training"]["epochs"]));
    assert_eq!(initializers(&dir.path().join("whole/student.onnx")), initializers(&dir.path().join("cut/student.onnx")));
}

/// Under torchrun itself (its agent serves the store; every worker is its client).
#[test]
fn torchrun_launches_two_ranks() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), recipe(dir.path(), 1)).unwrap();
    let torchrun = repo().join(".venv/bin/torchrun");
    assert!(torchrun.exists(), "./scripts/setup installs torch, with torchrun, into .venv");
    let o = Command::new(torchrun)
        .args(["--standalone", "--nproc-per-node=2", "--no-python"])
        .arg(env!("CARGO_BIN_EXE_compress"))
        .args(["--recipe", "r.yaml", "--out", "o"])
        .current_dir(dir.path())
        .env("COMPRESS_CACHE_DIR", dir.path().join("cache"))
        .env("COMPRESS_DIST_TIMEOUT", "60")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert_eq!(report(dir.path(), "o")["training"]["world_size"], 2);
    assert!(stderr.contains("rank 1 of 2 trained its share"), "{stderr}");
}

/// Every method trains with two ranks (a BatchNorm student: statistics averaged at each epoch's
/// end), its terms logged, the ranks' parameters equal after each epoch (the trainer checks),
/// rank 0 alone writing. AEKD reduces its mean gradients, MMKD its meta-gradient (its hard
/// buffers per rank), MGD's heads train on rank 0 and reach rank 1 by broadcast.
#[test]
fn every_method_trains_data_parallel() {
    let _serial = one_training_at_a_time();
    const ONE: &str = "[{name: t1, onnx: t1.onnx, input: {layout: nchw}}]";
    const TWO: &str = "[{name: t1, onnx: t1.onnx, input: {layout: nchw}}, {name: t2, onnx: t2.onnx, input: {layout: nchw}}]";
    let cases: &[(&str, &str, &[&str])] = &[
        ("kd", ONE, &["ce", "kd"]),
        ("fitnets", ONE, &["ce", "feat"]),
        ("dkd", ONE, &["ce", "tckd", "nckd"]),
        ("aver", TWO, &["ce", "kd"]),
        ("fitnet_mkd", TWO, &["ce", "kd", "feat"]),
        ("ebkd", TWO, &["ce", "kd"]),
        ("aekd", TWO, &["ce", "kd"]),
        ("ca_mkd", TWO, &["ce", "kd", "feat"]),
        ("de_mkd", TWO, &["ce", "kd", "feat"]),
        ("mmkd", TWO, &["ce", "kd", "feat"]),
        ("mmkd, mmkd: {hard_buffer: false, meta_freq: 2}", TWO, &["ce", "kd", "feat"]),
        ("mgd, mgd: {head_epochs: 1}", TWO, &["ce", "kd", "enc"]),
    ];
    let dir = tempfile::tempdir().unwrap();
    write_resnet8_teacher(&dir.path().join("t1.onnx"), 1);
    write_resnet8_teacher(&dir.path().join("t2.onnx"), 2);
    for (k, &(distill, teachers, terms)) in cases.iter().enumerate() {
        let text = tiny_recipe(teachers, distill).replace("train: {epochs: 1,", "train: {epochs: 2, teacher_cache: {enabled: false},");
        std::fs::write(dir.path().join("r.yaml"), text).unwrap();
        let (out, other) = (format!("m{k}"), format!("m{k}-rank1"));
        let ranks = run_ranks(dir.path(), &[&out, &other], &[]);
        for (r, (code, stderr)) in ranks.iter().enumerate() {
            assert_eq!(*code, 0, "{distill}, rank {r}:\n{stderr}");
        }
        let report = report(dir.path(), &out);
        assert_eq!(report["training"]["world_size"], 2, "{distill}");
        let losses = report["training"]["epochs"][1]["losses"].as_object().unwrap();
        let mut names: Vec<&str> = losses.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut want = terms.to_vec();
        want.sort_unstable();
        assert_eq!(names, want, "{distill}");
        assert!(!dir.path().join(&other).exists(), "{distill}: rank 1 writes nothing");
        if distill.starts_with("mgd") {
            assert!(ranks[0].1.contains("self-analyzing branches"), "rank 0 trains the heads");
            assert!(!ranks[1].1.contains("self-analyzing branches"), "rank 1 does not: {}", ranks[1].1);
        }
    }
}

/// What a data-parallel launch gets wrong is bad input naming the variable or key, before any
/// work; a rank 0 that refuses the run (its output folder holds a finished run) stops the other
/// rank with exit 2 instead of leaving it waiting.
#[test]
fn launch_mistakes_are_named() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), recipe(dir.path(), 1)).unwrap();
    let env_run = |vars: &[(&str, &str)], args: &[&str]| {
        let o = bin().args(args).current_dir(dir.path()).envs(vars.iter().copied()).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let run_args = ["--recipe", "r.yaml", "--out", "o"];
    let (code, err) = env_run(&[("WORLD_SIZE", "2"), ("RANK", "0")], &run_args);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("MASTER_ADDR is not set"), "{err}");
    let world = [("WORLD_SIZE", "3"), ("RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")];
    let (code, err) = env_run(&world, &run_args);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("train.batch_size") && err.contains("WORLD_SIZE=3") && err.contains("line"), "{err}");
    assert!(!dir.path().join("o").exists());
    // A finished run in the folder, no --overwrite: both ranks stop with exit 2.
    assert_eq!(run_in(dir.path(), &run_args).code, 0);
    let ranks = run_ranks(dir.path(), &["o", "o-rank1"], &[]);
    assert_eq!(ranks[0].0, 2, "{}", ranks[0].1);
    assert!(ranks[0].1.contains("--overwrite"), "{}", ranks[0].1);
    assert_eq!(ranks[1].0, 2, "{}", ranks[1].1);
    assert!(ranks[1].1.contains("rank 0 refused the run"), "{}", ranks[1].1);
}

/// The labels-only baseline and the QAT stage (calibration, fine-tuning) train data parallel too:
/// rank 1 takes part in all three trainings, rank 0 reports each with world size 2.
#[test]
fn baseline_and_qat_train_data_parallel() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    write_resnet8_teacher(&dir.path().join("t1.onnx"), 1);
    let text = tiny_recipe("[{name: t1, onnx: t1.onnx, input: {layout: nchw}}]", "kd").replace("train: {epochs: 1,", "train: {epochs: 1, baseline: true,")
        + "quantize: {epochs: 1, latency: {threads: [1], rounds: 1, batches: [1]}}\n";
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let ranks = run_ranks(dir.path(), &["o", "o-rank1"], &[]);
    for (r, (code, stderr)) in ranks.iter().enumerate() {
        assert_eq!(*code, 0, "rank {r}:\n{stderr}");
    }
    let report = report(dir.path(), "o");
    assert_eq!(report["training"]["world_size"], 2);
    assert_eq!(report["baseline"]["world_size"], 2);
    assert_eq!(report["quantization"]["training"]["world_size"], 2);
    assert!(report["training"]["communication_seconds"].as_f64().unwrap() > 0.0);
    assert!(dir.path().join("o/student.w8a8.onnx").exists());
    assert!(!dir.path().join("o-rank1").exists());
}

/// `compress compare` runs its learners data parallel: two ranks train every method in lockstep
/// on their shares, rank 0 alone evaluates, exports and writes the comparison; with `--resume`
/// the seeds rank 0 finished are skipped by both.
#[test]
fn compare_runs_data_parallel() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let text = recipe(dir.path(), 1) + "compare:\n  seeds: [0, 1]\n  methods: [{distill: {method: kd, teachers: [t1]}}, {distill: {method: aver}}]\n";
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let compare = |outs: [&str; 2], extra: &[&str]| {
        let port = free_port();
        let children: Vec<Child> = outs
            .iter()
            .enumerate()
            .map(|(r, out)| {
                let mut args = vec!["compare", "--recipe", "r.yaml", "--out", out];
                args.extend(extra);
                rank(dir.path(), &args, r, 2, port)
            })
            .collect();
        children.into_iter().map(finish).collect::<Vec<_>>()
    };
    let ranks = compare(["c", "c-rank1"], &[]);
    for (r, (code, stderr)) in ranks.iter().enumerate() {
        assert_eq!(*code, 0, "rank {r}:\n{stderr}");
    }
    let c: Value = serde_json::from_slice(&std::fs::read(dir.path().join("c/comparison.json")).unwrap()).unwrap();
    let methods = c["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 2);
    assert!(methods.iter().all(|m| m["seeds"].as_array().unwrap().len() == 2));
    assert!(!dir.path().join("c-rank1").exists(), "rank 1 writes nothing");
    assert!(ranks[1].1.contains("rank 1 of 2 trained its share"), "{}", ranks[1].1);
    // Seed 1 lost: both ranks train it again and skip seed 0.
    std::fs::remove_file(dir.path().join("c/comparison.json")).unwrap();
    std::fs::remove_file(dir.path().join("c/seeds/seed-1.json")).unwrap();
    let resumed = compare(["c", "c-rank1"], &["--resume"]);
    for (r, (code, stderr)) in resumed.iter().enumerate() {
        assert_eq!(*code, 0, "rank {r}:\n{stderr}");
    }
    assert!(resumed[0].1.contains("seed 0 finished earlier"), "{}", resumed[0].1);
    let again: Value = serde_json::from_slice(&std::fs::read(dir.path().join("c/comparison.json")).unwrap()).unwrap();
    let best = |v: &Value| v["methods"].as_array().unwrap().iter().map(|m| m["seeds"][1]["best_top1_tch"].as_f64().unwrap()).collect::<Vec<_>>();
    assert_eq!(best(&c), best(&again), "seed 1 trained again gives the same result");
}
