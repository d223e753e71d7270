//! `compress inspect MODEL.onnx [--json] [--verify]`: inputs, outputs, opset, producer, op
//! histogram, parameter count, unsupported ops, candidate feature taps; `--verify` runs our tch
//! import and ONNX Runtime on the same random input, at batch 1 and `--batch`, and reports per
//! output max_abs_diff and max_rel_diff.

use crate::bad_input;
use crate::graph::batching::BatchRunner;
use crate::graph::ops::unsupported_nodes;
use crate::graph::taps::candidate_taps;
use crate::graph::{Dim, Executor, Graph};
use crate::host::HostRead;
use crate::metrics;
use crate::runtime::OrtModel;
use clap::Args;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

#[derive(Args, Debug)]
pub struct InspectArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// Compare our import with ONNX Runtime on random input.
    #[arg(long)]
    pub verify: bool,
    /// --verify checks batch 1 and this batch size (fixed-batch models run batched after the
    /// relaxation pass, or per sample where it is not proven safe).
    #[arg(long, default_value_t = 4)]
    pub batch: i64,
}

pub fn run(a: &InspectArgs) -> anyhow::Result<i32> {
    let model = crate::onnx::model_file::read(&a.model)?;
    let graph = Graph::from_model(&model, &a.model.display().to_string())?;
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &graph.nodes {
        *ops.entry(n.op_type.as_str()).or_default() += 1;
    }
    let unsupported = unsupported_nodes(&graph.nodes);
    let dims = |d: &[Dim]| {
        d.iter()
            .map(|x| match x {
                Dim::Fixed(v) => json!(v),
                Dim::Symbolic(s) => json!(s),
            })
            .collect::<Vec<_>>()
    };
    let mut info = json!({
        "model": a.model,
        "producer": graph.producer,
        "opset": graph.opset,
        "inputs": graph.inputs.iter().map(|i| json!({"name": i.name, "shape": dims(&i.dims)})).collect::<Vec<_>>(),
        "outputs": graph.outputs.iter().map(|o| json!({"name": o.name, "shape": dims(&o.dims)})).collect::<Vec<_>>(),
        "parameters": graph.parameter_count(),
        "ops": ops,
        "unsupported": unsupported,
    });
    if unsupported.is_empty() {
        let names: Vec<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
        let exec = Executor::compile(&graph, &names, Device::Cpu)?;
        let (_, shapes) = tch::no_grad(|| exec.run_traced(&[&probe_input(&graph, 1, a)?]))?;
        info["taps"] = json!(candidate_taps(&graph, &shapes));
        if a.verify {
            info["verify"] = verify(a, graph, &names)?;
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        print_text(&info);
    }
    if !unsupported.is_empty() {
        return Err(bad_input!("{}: unsupported ops: {}", a.model.display(), unsupported.join(", ")));
    }
    Ok(0)
}

/// The most values a probe input may have: 2^26 (a 4,096×4,096 RGB image at batch 1),
/// `COMPRESS_MAX_INPUT_VALUES` overrides it.
fn max_input_values() -> i64 {
    std::env::var("COMPRESS_MAX_INPUT_VALUES").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 26)
}

/// A seeded random input of the declared shape, with `batch` for the batch dimension.
fn probe_input(graph: &Graph, batch: i64, a: &InspectArgs) -> anyhow::Result<Tensor> {
    let input = graph.inputs.first().ok_or_else(|| bad_input!("{}: the model has no inputs", a.model.display()))?;
    let shape: Vec<i64> = input
        .dims
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            _ if i == 0 => batch,
            Dim::Fixed(v) => *v,
            Dim::Symbolic(_) => 1,
        })
        .collect();
    let limit = max_input_values();
    let values = shape.iter().try_fold(1i64, |n, &d| if d < 0 { None } else { n.checked_mul(d) });
    if values.is_none_or(|v| v > limit) {
        return Err(bad_input!(
            "{}: input `{}` declares shape {shape:?}, more than {limit} values to probe (COMPRESS_MAX_INPUT_VALUES raises the limit)",
            a.model.display(),
            input.name
        ));
    }
    tch::manual_seed(0);
    Ok(Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)))
}

/// Our import against ONNX Runtime on the same random input, at batch 1 and `--batch`.
fn verify(a: &InspectArgs, mut graph: Graph, names: &[String]) -> anyhow::Result<serde_json::Value> {
    let sample = probe_input(&graph, 1, a)?.size();
    let runner = BatchRunner::compile(&mut graph, names, Device::Cpu, &sample, tch::Kind::Float)?;
    let mut ort = OrtModel::load(&a.model, 2)?;
    let mut runs = Vec::new();
    let mut batches = vec![1, a.batch];
    batches.dedup();
    for batch in batches {
        let x = probe_input(&graph, batch, a)?;
        let ours = tch::no_grad(|| runner.run(&x))?;
        let theirs = ort.run(&x)?;
        let mut per_output = Vec::new();
        for ((name, o), t) in names.iter().zip(&ours).zip(&theirs) {
            let o = o.to_kind(Kind::Float).reshape(t.size().as_slice());
            per_output.push(json!({
                "output": name,
                "shape": t.size(),
                "max_abs_diff": metrics::max_abs_diff(&o, t),
                "max_rel_diff": metrics::max_rel_diff(&o, t),
                "reference_max_abs": t.abs().max().read_f64(),
            }));
        }
        runs.push(json!({"batch": batch, "input_shape": x.size(), "outputs": per_output}));
    }
    Ok(json!({"execution": runner.execution, "ort_per_sample": ort.fixed_batch_one, "runs": runs}))
}

fn print_text(info: &serde_json::Value) {
    println!("model:      {}", info["model"].as_str().unwrap_or(""));
    println!("producer:   {}", info["producer"].as_str().unwrap_or(""));
    println!("opset:      {}", info["opset"]);
    for i in info["inputs"].as_array().into_iter().flatten() {
        println!("input:      {} {}", i["name"].as_str().unwrap_or(""), i["shape"]);
    }
    for o in info["outputs"].as_array().into_iter().flatten() {
        println!("output:     {} {}", o["name"].as_str().unwrap_or(""), o["shape"]);
    }
    println!("parameters: {}", info["parameters"]);
    let ops: Vec<String> = info["ops"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}×{v}")).collect();
    println!("ops:        {}", ops.join(", "));
    for u in info["unsupported"].as_array().into_iter().flatten() {
        println!("unsupported: {}", u.as_str().unwrap_or(""));
    }
    for t in info["taps"].as_array().into_iter().flatten() {
        println!("tap:        {} {} ({})", t["name"].as_str().unwrap_or(""), t["shape"], t["role"].as_str().unwrap_or(""));
    }
    if let Some(e) = info["verify"]["execution"].as_str() {
        println!("execution:  {e}");
    }
    for run in info["verify"]["runs"].as_array().into_iter().flatten() {
        for o in run["outputs"].as_array().into_iter().flatten() {
            println!(
                "verify:     batch {} {} max_abs_diff {:.3e} max_rel_diff {:.3e}",
                run["batch"],
                o["output"].as_str().unwrap_or(""),
                o["max_abs_diff"].as_f64().unwrap_or(f64::NAN),
                o["max_rel_diff"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
}
