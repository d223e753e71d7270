//! `compress inspect MODEL.onnx [--json] [--verify]`: inputs, outputs, opset, producer, op
//! histogram, parameter count, unsupported ops, candidate feature taps; `--verify` runs our tch import and ONNX Runtime
//! on the same random input and reports, per output, max_abs_diff and max_rel_diff.

use crate::bad_input;
use crate::graph::exec::unsupported_nodes;
use crate::graph::taps::candidate_taps;
use crate::graph::{Dim, Executor, Graph};
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
    /// Batch size for symbolic batch dimensions in --verify.
    #[arg(long, default_value_t = 2)]
    pub batch: i64,
}

pub fn run(a: &InspectArgs) -> anyhow::Result<i32> {
    let model = crate::onnx::model_file::read(&a.model)?;
    let graph = Graph::from_model(&model, &a.model.display().to_string())?;
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &graph.nodes {
        *ops.entry(n.op_type.as_str()).or_default() += 1;
    }
    let unsupported = unsupported_nodes(&graph);
    let dims = |d: &[Dim]| d.iter().map(|x| match x { Dim::Fixed(v) => json!(v), Dim::Symbolic(s) => json!(s) }).collect::<Vec<_>>();
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
        let x = probe_input(&graph, a)?;
        let names: Vec<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
        let exec = Executor::compile(&graph, &names, Device::Cpu)?;
        let (ours, shapes) = tch::no_grad(|| exec.run_traced(&[&x]))?;
        info["taps"] = json!(candidate_taps(&graph, &shapes));
        if a.verify {
            info["verify"] = verify(a, &x, &names, &ours)?;
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

/// A seeded random input of the declared shape, with `--batch` for a symbolic batch.
fn probe_input(graph: &Graph, a: &InspectArgs) -> anyhow::Result<Tensor> {
    let input = graph.inputs.first().ok_or_else(|| bad_input!("{}: the model has no inputs", a.model.display()))?;
    let shape: Vec<i64> = input
        .dims
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Fixed(v) => *v,
            Dim::Symbolic(_) if i == 0 => a.batch,
            Dim::Symbolic(_) => 1,
        })
        .collect();
    tch::manual_seed(0);
    Ok(Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)))
}

fn verify(a: &InspectArgs, x: &Tensor, names: &[String], ours: &[Tensor]) -> anyhow::Result<serde_json::Value> {
    let mut ort = OrtModel::load(&a.model, 2)?;
    let theirs = ort.run(x)?;
    let mut per_output = Vec::new();
    for ((name, o), t) in names.iter().zip(ours).zip(&theirs) {
        let o = o.to_kind(Kind::Float).reshape(t.size().as_slice());
        per_output.push(json!({
            "output": name,
            "shape": t.size(),
            "max_abs_diff": metrics::max_abs_diff(&o, t),
            "max_rel_diff": metrics::max_rel_diff(&o, t),
            "reference_max_abs": t.abs().max().double_value(&[]),
        }));
    }
    Ok(json!({"input_shape": x.size(), "outputs": per_output}))
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
    for o in info["verify"]["outputs"].as_array().into_iter().flatten() {
        println!(
            "verify:     {} max_abs_diff {:.3e} max_rel_diff {:.3e}",
            o["output"].as_str().unwrap_or(""),
            o["max_abs_diff"].as_f64().unwrap_or(f64::NAN),
            o["max_rel_diff"].as_f64().unwrap_or(f64::NAN)
        );
    }
}
