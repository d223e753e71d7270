//! ONNX's own backend node tests (generated from the installed `onnx` package by
//! `scripts/onnx-node-cases`, cached under `.cache/`, with the package's stored PyTorch-exported
//! model cases beside them) run through our executor on the CPU, as a
//! teacher's graph runs: every case whose nodes are all registered ops is imported, compiled and
//! run on its data sets, and its outputs compared with ONNX's reference outputs at the case's own
//! tolerances (|ours − theirs| ≤ atol + rtol·|theirs|; integers and booleans exactly).
//!
//! `COMPRESS_TEST_DEVICE=cuda` runs them on the GPU (scripts/gpu-check, with the cases it packed
//! in `COMPRESS_ONNX_CASES`): there every case must pass or be refused, and the counts are
//! printed; the record below is the CPU's.
//!
//! A case ends one of four ways: `pass`; `refused` (our import says by name that it cannot run
//! it, exit-2 bad input, the clean way); `wrong` (it ran and computed something else: never
//! acceptable); `failed` (any other error). The cases that do not pass are recorded with their
//! reasons in `tests/fixtures/onnx_conformance.json`; the test fails when a case changes outcome
//! without the record changing, when one computes something wrong, or when fewer than the
//! recorded share pass. `UPDATE_ONNX_CONFORMANCE=1` rewrites the record (and the per-op counts in
//! docs/SUPPORTED_OPS.md's conformance table).

mod common;
use common::*;
use compress::graph::{Executor, Graph, RunMode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The generated cases' folder: `COMPRESS_ONNX_CASES` (scripts/gpu-check unpacks them there),
/// else generated on first use.
fn cases_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("COMPRESS_ONNX_CASES") {
        return PathBuf::from(dir);
    }
    let o = std::process::Command::new(repo().join("scripts/onnx-node-cases")).output().expect("scripts/onnx-node-cases runs");
    assert!(o.status.success(), "scripts/onnx-node-cases failed:\n{}", String::from_utf8_lossy(&o.stderr));
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// Where the cases run: `COMPRESS_TEST_DEVICE` (`cuda` from scripts/gpu-check), else the CPU.
fn device() -> tch::Device {
    match std::env::var("COMPRESS_TEST_DEVICE").as_deref() {
        Ok("cuda") => tch::Device::Cuda(0),
        _ => tch::Device::Cpu,
    }
}

/// How one case ended, with the reason when it did not pass.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Pass,
    Refused(String),
    Wrong(String),
    Failed(String),
}

impl Outcome {
    fn kind(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Refused(_) => "refused",
            Outcome::Wrong(_) => "wrong",
            Outcome::Failed(_) => "failed",
        }
    }

    fn reason(&self) -> &str {
        match self {
            Outcome::Pass => "",
            Outcome::Refused(r) | Outcome::Wrong(r) | Outcome::Failed(r) => r,
        }
    }
}

fn read_tensor(path: &Path) -> anyhow::Result<Tensor> {
    use protobuf::Message;
    let t = compress::onnx::TensorProto::parse_from_bytes(&std::fs::read(path)?)?;
    compress::onnx::tensor::to_tch(&t)
}

/// The first line of an error, without libtorch's stack.
fn short(e: &anyhow::Error) -> String {
    let text = compress::error::without_backtraces(&format!("{e:#}"));
    let line = text.lines().next().unwrap_or("").to_string();
    if line.len() > 240 {
        format!("{}…", &line[..line.char_indices().nth(240).map_or(line.len(), |(i, _)| i)])
    } else {
        line
    }
}

/// Whether `ours` equals `theirs` at the tolerances; the first difference otherwise.
fn compare(ours: &Tensor, theirs: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if ours.size() != theirs.size() {
        return Err(format!("shape {:?}, expected {:?}", ours.size(), theirs.size()));
    }
    if ours.kind() != theirs.kind() {
        return Err(format!("type {:?}, expected {:?}", ours.kind(), theirs.kind()));
    }
    if theirs.numel() == 0 {
        return Ok(());
    }
    let float = matches!(
        theirs.kind(),
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 | Kind::Float8e4m3fn | Kind::Float8e4m3fnuz | Kind::Float8e5m2 | Kind::Float8e5m2fnuz
    );
    let (a, b) = (ours.to_kind(Kind::Double), theirs.to_kind(Kind::Double));
    let ok = if float {
        let close = (&a - &b).abs().le_tensor(&(b.abs() * rtol + atol));
        let both_nan = a.isnan().logical_and(&b.isnan());
        let same_inf = a.isinf().logical_and(&b.isinf()).logical_and(&a.eq_tensor(&b));
        close.logical_or(&both_nan).logical_or(&same_inf)
    } else {
        a.eq_tensor(&b)
    };
    let bad = ok.logical_not().sum(Kind::Int64).reshape([1]);
    let bad = compress::host::vec::<i64>(&bad).map_err(|e| e.to_string())?[0];
    if bad == 0 {
        return Ok(());
    }
    let worst = compress::host::vec::<f64>(&(&a - &b).abs().nan_to_num(1e300, 1e300, 1e300).max().reshape([1])).map_err(|e| e.to_string())?[0];
    Err(format!("{bad} of {} values differ (largest difference {worst:.3e}; rtol {rtol:e}, atol {atol:e})", theirs.numel()))
}

/// Runs one case folder.
fn run_case(dir: &Path) -> Outcome {
    let model = match compress::onnx::model_file::read(&dir.join("model.onnx")) {
        Ok(m) => m,
        Err(e) => return if compress::error::is_bad_input(&e) { Outcome::Refused(short(&e)) } else { Outcome::Failed(short(&e)) },
    };
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    let (rtol, atol) = (meta["rtol"].as_f64().unwrap_or(1e-3), meta["atol"].as_f64().unwrap_or(1e-7));
    let classify = |e: anyhow::Error| if compress::error::is_bad_input(&e) { Outcome::Refused(short(&e)) } else { Outcome::Failed(short(&e)) };
    let mut graph = match Graph::from_model(&model, "case") {
        Ok(g) => g,
        Err(e) => return classify(e),
    };
    let device = device();
    graph.to_device(device);
    let fetch: Vec<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
    let exec = match Executor::compile_frozen(&graph, &fetch, device) {
        Ok(x) => x,
        Err(e) => return classify(e),
    };
    let sets = meta["data_sets"].as_u64().unwrap_or(1);
    for s in 0..sets {
        let data = dir.join(format!("test_data_set_{s}"));
        let count = |prefix: &str| (0..).take_while(|k| data.join(format!("{prefix}_{k}.pb")).exists()).count();
        let inputs: anyhow::Result<Vec<Tensor>> = (0..count("input")).map(|k| read_tensor(&data.join(format!("input_{k}.pb")))).collect();
        let expected: anyhow::Result<Vec<Tensor>> = (0..count("output")).map(|k| read_tensor(&data.join(format!("output_{k}.pb")))).collect();
        let (inputs, expected) = match (inputs, expected) {
            (Ok(i), Ok(o)) => (i, o),
            (Err(e), _) | (_, Err(e)) => return Outcome::Failed(format!("reading the case's data: {}", short(&e))),
        };
        if inputs.len() != graph.inputs.len() {
            return Outcome::Failed(format!("{} inputs given for {} declared", inputs.len(), graph.inputs.len()));
        }
        let inputs: Vec<Tensor> = inputs.iter().map(|t| t.to_device(device)).collect();
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| exec.run(&refs, RunMode::Eval)));
        let outs = match run {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return classify(e),
            Err(p) => {
                return Outcome::Failed(format!(
                    "panicked: {}",
                    p.downcast_ref::<String>().cloned().or(p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
                ))
            }
        };
        for (k, (ours, theirs)) in outs.iter().zip(&expected).enumerate() {
            if let Err(why) = compare(&ours.to_device(tch::Device::Cpu), theirs, rtol, atol) {
                return Outcome::Wrong(format!("output {k}: {why}"));
            }
        }
    }
    Outcome::Pass
}

/// The default-domain op types of a model, or `None` when a node is of another domain or not
/// in our registry (the case is not ours to run).
fn registered_ops(dir: &Path) -> Option<Vec<String>> {
    let model = compress::onnx::model_file::read(&dir.join("model.onnx")).ok()?;
    let nodes = &model.graph.as_ref()?.node;
    let registry = compress::graph::ops::registry();
    let mut ops: Vec<String> = Vec::new();
    for n in nodes {
        if !compress::graph::ops::is_default_domain(n) || registry.get(&n.op_type).is_none() {
            return None;
        }
        if !ops.contains(&n.op_type) {
            ops.push(n.op_type.clone());
        }
    }
    Some(ops)
}

#[test]
fn onnx_node_cases_of_registered_ops() {
    let _serial = one_training_at_a_time();
    let dir = cases_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("model.onnx").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() > 1000, "{} cases in {}", names.len(), dir.display());
    let mut outcomes: BTreeMap<String, (Vec<String>, Outcome)> = BTreeMap::new();
    let mut suite_of: BTreeMap<String, String> = BTreeMap::new();
    for name in &names {
        let case = dir.join(name);
        let meta: Value = serde_json::from_slice(&std::fs::read(case.join("case.json")).unwrap()).unwrap();
        suite_of.insert(name.clone(), meta["suite"].as_str().unwrap_or("node").to_string());
        let Some(ops) = registered_ops(&case) else { continue };
        outcomes.insert(name.clone(), (ops, run_case(&case)));
    }
    let generated = suite_of.values().filter(|s| *s == "node").count();
    // The node cases (ONNX's generated ones, the share the issue counts), and per stored suite.
    let mut suites: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (name, (_, o)) in &outcomes {
        let e = suites.entry(suite_of[name].clone()).or_default();
        e.1 += 1;
        if *o == Outcome::Pass {
            e.0 += 1;
        }
    }
    let (passed, total) = suites.get("node").copied().unwrap_or_default();
    // Per op, node cases only (the case's first op, its subject; the others are helpers such
    // as Constant).
    let mut per_op: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (name, (ops, o)) in &outcomes {
        if suite_of[name] != "node" {
            continue;
        }
        let e = per_op.entry(ops[0].clone()).or_default();
        e.1 += 1;
        if *o == Outcome::Pass {
            e.0 += 1;
        }
    }
    let record: BTreeMap<String, Value> =
        outcomes.iter().filter(|(_, (_, o))| *o != Outcome::Pass).map(|(n, (_, o))| (n.clone(), json!({"outcome": o.kind(), "reason": o.reason()}))).collect();
    let stored: BTreeMap<String, Value> = suites.iter().filter(|(k, _)| k.as_str() != "node").map(|(k, (p, r))| (k.clone(), json!([p, r]))).collect();
    let summary = json!({
        "onnx": std::fs::read_to_string(dir.join("onnx_version")).unwrap_or_default().trim(),
        "cases_generated": generated,
        "cases_of_registered_ops": total,
        "passed": passed,
        "stored_model_suites": stored,
        "per_op": per_op.iter().map(|(k, (p, r))| (k.clone(), json!([p, r]))).collect::<BTreeMap<_, _>>(),
        "not_passing": record,
    });
    let stored_text: Vec<String> = stored.iter().map(|(k, c)| format!("{k} {}/{}", c[0], c[1])).collect();
    let stored_text = stored_text.join(", ");
    let unclean: Vec<String> = outcomes
        .iter()
        .filter(|(_, (_, o))| matches!(o, Outcome::Wrong(_) | Outcome::Failed(_)))
        .map(|(n, (_, o))| format!("{n}: {} {}", o.kind(), o.reason()))
        .collect();
    if device() != tch::Device::Cpu {
        // On an accelerator (scripts/gpu-check): the counts and every unclean case; the record
        // is the CPU's.
        eprintln!("ONNX node cases on {:?}: {passed} of {total} cases of registered ops pass ({generated} generated); stored models: {stored_text}", device());
        assert!(unclean.is_empty(), "cases that neither pass nor are refused by name:\n{}", unclean.join("\n"));
        return;
    }
    let path = repo().join("tests/fixtures/onnx_conformance.json");
    if std::env::var_os("UPDATE_ONNX_CONFORMANCE").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&summary).unwrap() + "\n").unwrap();
    }
    eprintln!("ONNX node cases: {passed} of {total} cases of registered ops pass ({generated} generated); stored models: {stored_text}");
    let recorded: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("tests/fixtures/onnx_conformance.json (UPDATE_ONNX_CONFORMANCE=1 writes it)")).unwrap();
    let mut changed = Vec::new();
    for (name, (_, o)) in &outcomes {
        let was = recorded["not_passing"].get(name).and_then(|r| r["outcome"].as_str()).unwrap_or("pass");
        if was != o.kind() {
            changed.push(format!("{name}: {was} → {} {}", o.kind(), o.reason()));
        }
    }
    assert!(unclean.is_empty(), "cases that neither pass nor are refused by name:\n{}", unclean.join("\n"));
    assert!(changed.is_empty(), "cases changed outcome (fix them, or rerun with UPDATE_ONNX_CONFORMANCE=1 and say why):\n{}", changed.join("\n"));
    assert_eq!(recorded["passed"].as_u64(), Some(passed as u64));
    assert_eq!(recorded["stored_model_suites"], json!(stored));
}
