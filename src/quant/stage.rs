//! The quantization-aware student of the recipe's `quantize` section: bit widths per layer
//! (global, first and last, per node name), their checks by key, and the float student turned
//! into a QDQ graph (every BatchNorm that follows a convolution folded into it, so the trained
//! convolutions are the exported ones; a BatchNorm after no convolution, as in pre-activation
//! Wide ResNets, stays and is exported with its running statistics).

use super::qdq::{insert_qdq, LayerBits, QuantizedLayer};
use crate::graph::fold_bn::fold_batch_norm;
use crate::graph::Graph;
use crate::recipe::schema::Quantize;
use tch::Tensor;

pub const WEIGHT_BITS: &[u32] = &[8, 4, 2];
pub const ACTIVATION_BITS: &[u32] = &[8, 4];

/// The quantized layers of `graph`, in order: every Conv and Gemm node's name.
pub fn layer_names(graph: &Graph) -> Vec<String> {
    graph.nodes.iter().filter(|n| n.op_type == "Conv" || n.op_type == "Gemm").map(|n| n.name.clone()).collect()
}

/// Each layer's widths: `layers.<name>` over `first_last` (the first and last layer) over the
/// global `weights`/`activations`.
pub fn layer_bits(q: &Quantize, names: &[String]) -> Vec<LayerBits> {
    let last = names.len().saturating_sub(1);
    names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let edge = q.first_last.filter(|_| k == 0 || k == last);
            let mut b = LayerBits { weights: edge.unwrap_or(q.weights), activations: edge.unwrap_or(q.activations) };
            if let Some(entry) = q.layers.get(name) {
                b.weights = entry.weights.unwrap_or(b.weights);
                b.activations = entry.activations.unwrap_or(b.activations);
            }
            b
        })
        .collect()
}

/// Problems with the section, each naming its key; `names` are the student's layers (`None`
/// when the student could not be built, which is reported on its own).
pub fn check(q: &Quantize, names: Option<&[String]>) -> Vec<String> {
    let mut problems = Vec::new();
    let list = |v: &[u32]| v.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ");
    if let Some(lr) = q.lr.filter(|lr| !(*lr > 0.0 && lr.is_finite())) {
        problems.push(format!("quantize.lr: must be a positive number, got {lr}"));
    }
    if q.calibration_images == 0 {
        problems.push("quantize.calibration_images: must be at least 1".into());
    }
    let lat = &q.latency;
    if lat.rounds == 0 || lat.rounds > 1000 {
        problems.push(format!("quantize.latency.rounds: must be in 1..=1000, got {}", lat.rounds));
    }
    for (key, values, max) in [("quantize.latency.threads", &lat.threads, 1024), ("quantize.latency.batches", &lat.batches, 4096)] {
        if let Some(v) = values.iter().find(|v| !(1..=max).contains(*v)) {
            problems.push(format!("{key}: each must be in 1..={max}, got {v}"));
        }
    }
    let mut bits = |key: String, value: u32, allowed: &[u32]| {
        if !allowed.contains(&value) {
            problems.push(format!("{key}: {value} bits is not supported ({})", list(allowed)));
        }
    };
    bits("quantize.weights".into(), q.weights, WEIGHT_BITS);
    bits("quantize.activations".into(), q.activations, ACTIVATION_BITS);
    if let Some(b) = q.first_last {
        bits("quantize.first_last".into(), b, ACTIVATION_BITS);
    }
    for (name, entry) in &q.layers {
        if let Some(w) = entry.weights {
            bits(format!("quantize.layers.{name}.weights"), w, WEIGHT_BITS);
        }
        if let Some(a) = entry.activations {
            bits(format!("quantize.layers.{name}.activations"), a, ACTIVATION_BITS);
        }
    }
    let names = names.unwrap_or_default();
    for name in q.layers.keys().filter(|n| !names.is_empty() && !names.contains(n)) {
        let shown: Vec<&str> = names.iter().take(12).map(String::as_str).collect();
        let more = if names.len() > 12 { format!(", … ({} in all)", names.len()) } else { String::new() };
        problems.push(format!("quantize.layers.{name}: the student has no Conv or Gemm named `{name}` (its layers: {}{more})", shown.join(", ")));
    }
    if q.epochs == 0 {
        problems.push("quantize.epochs: must be positive".into());
    }
    if q.lr.is_some_and(|lr| !(lr > 0.0 && lr.is_finite())) {
        problems.push("quantize.lr: must be a positive number".into());
    }
    if q.calibration_images == 0 {
        problems.push("quantize.calibration_images: must be positive".into());
    }
    let l = &q.latency;
    if l.rounds == 0 || l.threads.is_empty() || l.threads.contains(&0) || l.batches.is_empty() || l.batches.contains(&0) {
        problems.push("quantize.latency: rounds, threads and every batch must be positive".into());
    }
    problems
}

/// Problems with `graph`'s layers, by node name: there must be some, each with a name of its
/// own (the export and the report find layers by name); every Conv and Gemm weight must be an
/// initializer (the quantizer's steps are per channel of a stored weight); and a Gemm stored
/// below 8 bits needs transA = 0, alpha = beta = 1 (ONNX Runtime's MatMulNBits) and a weight no
/// other layer reads (it is rewritten as packed int4).
pub fn check_layers(q: &Quantize, graph: &Graph) -> Vec<String> {
    let names = layer_names(graph);
    if names.is_empty() {
        return vec!["quantize: the student has no Conv or Gemm layer to quantize".into()];
    }
    let mut unnamed = Vec::new();
    for (k, name) in names.iter().enumerate() {
        if name.is_empty() || names[..k].contains(name) {
            let what = if name.is_empty() { "has no name".to_string() } else { format!("shares the name `{name}` with an earlier one") };
            unnamed.push(format!("quantize: Conv/Gemm layer #{k} of the student {what}; the quantized export needs a distinct name per layer"));
        }
    }
    if !unnamed.is_empty() {
        return unnamed;
    }
    let bits = layer_bits(q, &names);
    let computed = graph
        .nodes
        .iter()
        .filter(|n| (n.op_type == "Conv" || n.op_type == "Gemm") && n.input.get(1).is_none_or(|w| graph.initializer(w).is_none()))
        .map(|n| format!("quantize: {} `{}` reads a computed weight, not a stored one; only stored weights can be quantized", n.op_type, n.name));
    let linear = graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "Gemm")
        .filter(|n| names.iter().position(|x| *x == n.name).is_some_and(|k| bits[k].weights < 8))
        .filter(|n| {
            let attr = |name: &str| n.attribute.iter().find(|a| a.name == name);
            attr("transA").is_some_and(|a| a.i != 0) || attr("alpha").is_some_and(|a| a.f != 1.0) || attr("beta").is_some_and(|a| a.f != 1.0)
        })
        .map(|n| {
            format!(
                "quantize: Gemm `{}` below 8 bits needs transA = 0 and alpha = beta = 1 (MatMulNBits); give it `quantize.layers.{}.weights: 8`",
                n.name, n.name
            )
        });
    let shared = graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "Gemm")
        .filter(|n| names.iter().position(|x| *x == n.name).is_some_and(|k| bits[k].weights < 8))
        .filter(|n| n.input.get(1).is_some_and(|w| graph.nodes.iter().filter(|m| (m.op_type == "Conv" || m.op_type == "Gemm") && m.input.get(1) == Some(w)).count() > 1))
        .map(|n| format!("quantize: Gemm `{}` below 8 bits shares its weight with another layer; packed int4 storage needs its own (give it `quantize.layers.{}.weights: 8`)", n.name, n.name));
    computed.chain(linear).chain(shared).collect()
}

/// The QAT student's graph: a detached copy of `float` with BatchNorm folded into the
/// convolutions and QDQ pairs inserted at the widths of `q`, activation steps initialised on
/// `calibration` (preprocessed images on the student's device).
pub fn quantized_graph(float: &Graph, q: &Quantize, calibration: &Tensor) -> anyhow::Result<(Graph, Vec<QuantizedLayer>)> {
    let mut graph = float.detached_copy();
    fold_batch_norm(&mut graph)?;
    let names = layer_names(&graph);
    let bits = layer_bits(q, &names);
    let layers = insert_qdq(&mut graph, calibration, &|k, _| bits[k])?;
    graph.to_device(calibration.device());
    Ok((graph, layers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> Quantize {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn first_and_last_layers_default_to_eight_bits_and_layers_override() {
        let names: Vec<String> = ["conv1", "b.conv", "c.conv", "fc"].iter().map(|s| s.to_string()).collect();
        let q = section("{weights: 2, activations: 4, layers: {c.conv: {weights: 4}}}");
        let bits: Vec<(u32, u32)> = layer_bits(&q, &names).iter().map(|b| (b.weights, b.activations)).collect();
        assert_eq!(bits, vec![(8, 8), (2, 4), (4, 4), (8, 8)]);
        let q = section("{weights: 4, first_last: null}");
        assert!(layer_bits(&q, &names).iter().all(|b| b.weights == 4 && b.activations == 8));
    }

    /// A low-bit Gemm MatMulNBits cannot take, and a computed weight, are refused by node name.
    #[test]
    fn layers_the_export_cannot_handle_are_named() {
        let spec = crate::zoo::ArchSpec { num_classes: 10, width: 0.5, image_size: 32 };
        let mut graph = crate::zoo::build("resnet8", &spec, tch::Device::Cpu).unwrap();
        let q = section("{weights: 4, first_last: null}");
        assert!(check_layers(&q, &graph).is_empty());
        let gemm = graph.nodes.iter().position(|n| n.op_type == "Gemm").unwrap();
        graph.nodes[gemm].attribute.push(crate::onnx::attr::float("alpha", 2.0));
        let conv = graph.nodes.iter().position(|n| n.op_type == "Conv").unwrap();
        graph.nodes[conv].input[1] = "computed".into();
        let problems = check_layers(&q, &graph).join("\n");
        assert!(problems.contains(&format!("Gemm `{}` below 8 bits needs transA = 0 and alpha = beta = 1", graph.nodes[gemm].name)), "{problems}");
        assert!(problems.contains(&format!("Conv `{}` reads a computed weight", graph.nodes[conv].name)), "{problems}");
        // At 8 bits the Gemm is a QGemm, which takes alpha.
        assert!(!check_layers(&section("{}"), &graph).join("\n").contains("Gemm"));
    }

    /// Layers the export could not tell apart, a low-bit Gemm weight read by another layer, and
    /// a student with nothing to quantize are refused.
    #[test]
    fn layers_need_names_and_own_low_bit_weights() {
        let spec = crate::zoo::ArchSpec { num_classes: 10, width: 0.5, image_size: 32 };
        let fresh = || crate::zoo::build("resnet8", &spec, tch::Device::Cpu).unwrap();
        let q = section("{weights: 4, first_last: null}");
        let mut graph = fresh();
        let convs: Vec<usize> = graph.nodes.iter().enumerate().filter(|(_, n)| n.op_type == "Conv").map(|(i, _)| i).collect();
        graph.nodes[convs[1]].name = graph.nodes[convs[0]].name.clone();
        graph.nodes[convs[2]].name.clear();
        let problems = check_layers(&q, &graph).join("\n");
        assert!(problems.contains("layer #1 of the student shares the name"), "{problems}");
        assert!(problems.contains("layer #2 of the student has no name"), "{problems}");

        let mut graph = fresh();
        let gemm = graph.nodes.iter().position(|n| n.op_type == "Gemm").unwrap();
        let mut twin = graph.nodes[gemm].clone();
        twin.name = "twin".into();
        twin.output = vec!["twin_out".into()];
        graph.nodes.push(twin);
        let problems = check_layers(&q, &graph).join("\n");
        assert!(problems.contains("below 8 bits shares its weight with another layer"), "{problems}");

        let mut graph = fresh();
        graph.nodes.retain(|n| n.op_type != "Conv" && n.op_type != "Gemm");
        assert_eq!(check_layers(&q, &graph), ["quantize: the student has no Conv or Gemm layer to quantize"]);
    }

    #[test]
    fn problems_name_their_keys() {
        let names = vec!["conv1".to_string(), "fc".to_string()];
        let q = section("{weights: 3, activations: 2, epochs: 0, layers: {conv9: {weights: 16}}}");
        let problems = check(&q, Some(&names)).join("\n");
        for key in [
            "quantize.weights: 3 bits",
            "quantize.activations: 2 bits",
            "quantize.epochs",
            "quantize.layers.conv9.weights: 16 bits",
            "quantize.layers.conv9: the student has no Conv or Gemm named `conv9`",
        ] {
            assert!(problems.contains(key), "{key} missing in:\n{problems}");
        }
        assert!(check(&section("{}"), Some(&names)).is_empty());
        // Without the student's layers, the section's own problems are still named.
        assert!(check(&q, None).join("\n").contains("quantize.weights: 3 bits"));
    }
}
