//! Folding BatchNormalization into the convolution before it, for inference export: with
//! s = γ / √(σ² + ε), the conv's weight becomes w·s (per output channel) and its bias
//! (b − μ)·s + β. The conv keeps its name and takes over the BN's output name, so everything
//! downstream (and every tap) still finds its value.

use super::ir::Graph;
use crate::onnx::attr::Attrs;
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// Folds every BatchNormalization whose input is a Conv output read by nothing else and whose
/// parameters, like the conv's weight and bias, are initializers. Returns the number folded.
pub fn fold_batch_norm(graph: &mut Graph) -> anyhow::Result<usize> {
    let mut readers: HashMap<String, usize> = HashMap::new();
    for n in &graph.nodes {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *readers.entry(i.clone()).or_default() += 1;
        }
    }
    let outputs: Vec<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
    let mut folded = 0;
    let mut i = 0;
    while i < graph.nodes.len() {
        let bn = &graph.nodes[i];
        if bn.op_type != "BatchNormalization" || bn.input.len() < 5 || bn.output.len() != 1 {
            i += 1;
            continue;
        }
        let x = bn.input[0].clone();
        let Some(conv_idx) = graph.nodes.iter().position(|n| n.op_type == "Conv" && n.output.first() == Some(&x)) else {
            i += 1;
            continue;
        };
        let params: Option<Vec<Tensor>> = bn.input[1..5].iter().map(|n| graph.initializer(n).map(|t| t.detach().to_kind(Kind::Double))).collect();
        let (Some(params), true, false) = (params, readers.get(&x) == Some(&1), outputs.contains(&x)) else {
            i += 1;
            continue;
        };
        // Weight and bias must be initializers we can rewrite (a computed bias would be
        // shadowed by a new initializer of the same name).
        let conv_ref = &graph.nodes[conv_idx];
        let bias_is_constant = match conv_ref.input.get(2).filter(|b| !b.is_empty()) {
            Some(b) => graph.initializer(b).is_some(),
            None => true,
        };
        if graph.initializer(&conv_ref.input[1]).is_none() || !bias_is_constant {
            i += 1;
            continue;
        }
        let eps = Attrs::new(bn).float_or("epsilon", 1e-5)? as f64;
        let (gamma, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
        let scale = gamma / (var + eps).sqrt();
        let bn_out = bn.output[0].clone();
        let conv = graph.nodes[conv_idx].clone();
        let w_name = conv.input[1].clone();
        let w = graph.initializer(&w_name).ok_or_else(|| anyhow::anyhow!("conv `{}` weight is not an initializer", conv.name))?;
        let kind = w.kind();
        let new_w = (w.detach().to_kind(Kind::Double) * scale.reshape([-1, 1, 1, 1])).to_kind(kind);
        let old_b = match conv.input.get(2).filter(|b| !b.is_empty()) {
            Some(b) => graph.initializer(b).map(|t| t.detach().to_kind(Kind::Double)).unwrap_or_else(|| mean.zeros_like()),
            None => mean.zeros_like(),
        };
        let new_b = ((old_b - mean) * &scale + beta).to_kind(kind);
        let b_name = match conv.input.get(2).filter(|b| !b.is_empty()) {
            Some(b) => b.clone(),
            None => format!("{}.bias", conv.name),
        };
        graph.set_initializer(&w_name, new_w);
        graph.set_initializer(&b_name, new_b);
        let c = &mut graph.nodes[conv_idx];
        c.input.truncate(2);
        c.input.push(b_name);
        c.output[0] = bn_out;
        let bn_inputs: Vec<String> = graph.nodes[i].input[1..5].to_vec();
        graph.nodes.remove(i);
        for name in bn_inputs {
            if !graph.nodes.iter().any(|n| n.input.contains(&name)) {
                graph.initializers.retain(|(n, _)| *n != name);
            }
        }
        folded += 1;
    }
    Ok(folded)
}
