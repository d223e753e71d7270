//! The run's quantization-aware stage: the float student becomes a QDQ graph (BatchNorm
//! folded, steps calibrated), fine-tunes under the same method and teachers (and, if asked,
//! on labels only from the same start), is written as `student.w<W>a<A>.onnx` (the shared
//! design's `student.<bits>.onnx`), and is measured:
//! accuracy in tch and ONNX Runtime, agreement, integer kernels per layer, size, latency.

use super::distiller::Distiller;
use super::plan::MethodUse;
use super::plan::Plan;
use crate::distill::trainer::TrainInputs;
use crate::export::quantized::write_quantized;
use crate::metrics;
use crate::quant::stage::quantized_graph;
use crate::recipe::schema::{Quantize, Schedule, Train};
use crate::report::{LatencyRecord, QuantizationRecord};
use crate::runtime::{self, OrtModel};
use std::path::Path;
use tch::Tensor;

pub(super) struct Stage<'a> {
    pub plan: &'a Plan,
    pub q: &'a Quantize,
    /// The trained float student and its method.
    pub float: &'a Distiller,
    pub inputs: &'a TrainInputs<'a>,
    pub out: &'a Path,
}

/// The quantized file's name, after the section's global widths: `student.w8a8.onnx`,
/// `student.w4a8.onnx`, … (per-layer widths and the 8-bit first and last layers are in the
/// report and the file's metadata).
pub(super) fn file_name(q: &Quantize) -> String {
    format!("student.w{}a{}.onnx", q.weights, q.activations)
}

/// Whether `name` has the form of [`file_name`].
pub(super) fn is_quantized_file(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix("student.w").and_then(|r| r.strip_suffix(".onnx")).and_then(|r| r.split_once('a')).is_some_and(|(w, a)| digits(w) && digits(a))
}

impl Stage<'_> {
    /// The QAT stage's training settings: the run's, with the section's epochs and learning
    /// rate and a cosine schedule. The default rate is a fiftieth of the float stage's: with
    /// BatchNorm folded nothing normalizes the layers any more, and a tenth already undid
    /// most of the float training in a first trial (ResNet-8, 37% → 26% in one epoch).
    fn train_config(&self) -> Train {
        let mut cfg = self.plan.train.clone();
        cfg.epochs = self.q.epochs;
        cfg.baseline = false;
        cfg.optimizer.sgd.lr = self.q.lr.unwrap_or(self.plan.train.optimizer.sgd.lr / 50.0);
        cfg.schedule = Schedule { cosine: Some(Default::default()), step: None };
        cfg
    }

    /// The first `calibration_images` training images under the evaluation transform,
    /// preprocessed, on the student's device.
    fn calibration(&self) -> anyhow::Result<Tensor> {
        let n = self.q.calibration_images.min(self.inputs.train.len());
        let size = self.inputs.test.sizes[0];
        let images = self.inputs.train.eval_batches(vec![(0..n).collect()], &[size], |stream| {
            let batch = stream.next().ok_or_else(|| anyhow::anyhow!("no calibration batch"))??;
            Ok(batch.views.into_iter().next().expect("one view per size"))
        })?;
        self.inputs.preprocess.f_apply(&images, self.plan.device)
    }

    /// One QAT run from the float student under `usage`.
    fn qat(
        &self,
        usage: &MethodUse,
        label: &str,
        calibration: &Tensor,
    ) -> anyhow::Result<(Distiller, Vec<crate::quant::qdq::QuantizedLayer>, crate::report::TrainingRecord)> {
        let (graph, layers) = quantized_graph(&self.float.student.graph, self.q, calibration)?;
        let distiller = if usage.distill.method == self.float.usage.distill.method {
            // The same method object: its connectors and state carry on from the float stage.
            let f = self.float;
            let student = crate::student::Student::with_taps(graph, self.plan.device, &f.usage.needs.student_taps)?;
            Distiller { student, method: f.method.clone(), usage: f.usage.clone() }
        } else {
            Distiller::new(self.plan, usage, graph, self.inputs.seed)?
        };
        let inputs = TrainInputs {
            label,
            checkpoints: Some(self.out.join("checkpoints").join(label)),
            identity: self.inputs.identity.clone(),
            numerics: crate::graph::Numerics::qat(self.plan.train.deterministic),
            ..*self.inputs
        };
        let record = distiller.train(&self.train_config(), &inputs)?;
        // The biases on ONNX Runtime's int32 grid, so the student measured and exported here
        // computes what the file computes.
        crate::quant::qdq::snap_biases(&distiller.student.graph)?;
        Ok((distiller, layers, record))
    }

    /// Latency of the float and the quantized file, side by side, per thread count and batch.
    fn latency(&self, float_path: &Path, path: &Path) -> anyhow::Result<Vec<LatencyRecord>> {
        let size = self.plan.data.image_size as i64;
        let lat = &self.q.latency;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        eprintln!("quantize: timing {} and {name} in ONNX Runtime ({:?} threads, {} rounds)", float_path.display(), lat.threads, lat.rounds);
        let mut latency = Vec::new();
        for &threads in &lat.threads {
            let rows = runtime::latency::measure(&[float_path, path], &[3, size, size], &lat.batches, lat.rounds, threads)?;
            latency.extend(rows.iter().map(|r| LatencyRecord {
                threads,
                batch: r.batch,
                float_ms: r.median_ms[0],
                quantized_ms: r.median_ms[1],
                speedup: r.median_ms[0] / r.median_ms[1],
            }));
        }
        Ok(latency)
    }

    /// The stage's trainings alone, what a data-parallel rank other than 0 takes part in (the
    /// same calibration and steps as rank 0's [`Stage::run`], its share of every batch).
    pub(super) fn train_only(&self) -> anyhow::Result<()> {
        let calibration = self.calibration()?;
        self.qat(&self.plan.method, "qat", &calibration)?;
        if self.q.baseline && self.plan.method.distill.method != "none" {
            self.qat(&self.plan.method.labels_only(), "qat_baseline", &calibration)?;
        }
        Ok(())
    }

    /// The stage: its trainings, the file, and its measurements next to the float file's
    /// (`float_fidelity`); `metadata` goes into the file.
    pub(super) fn run(
        &self,
        float_fidelity: &crate::report::Fidelity,
        metadata: &crate::export::metadata::StudentMetadata,
    ) -> anyhow::Result<QuantizationRecord> {
        let calibration = self.calibration()?;
        let (quantized, layers, training) = self.qat(&self.plan.method, "qat", &calibration)?;
        // (A run without a distillation method has no teachers to compare against.)
        let baseline = if self.q.baseline && self.plan.method.distill.method != "none" {
            Some(self.qat(&self.plan.method.labels_only(), "qat_baseline", &calibration)?.2)
        } else {
            None
        };
        // The file.
        let file_name = file_name(self.q);
        let path = self.out.join(&file_name);
        let bits: Vec<_> = layers.iter().map(|l| (l.node.clone(), l.bits.weights, l.bits.activations)).collect();
        let mut metadata = metadata.entries()?;
        metadata.push((crate::export::metadata::QUANTIZATION, serde_json::to_string(&bits)?));
        let opset = self.plan.export.opset;
        let exported = write_quantized(&quantized.student.graph, &layers, opset, &metadata, &path)?;
        let file = crate::export::file_record(&path, exported.opset, &storage_summary(&exported.layers))?;
        // Accuracy and agreement on the test set.
        let (test, pre) = (self.inputs.test.student(), self.inputs.preprocess);
        let float_path = self.out.join("student.onnx");
        // The float file's logits again, for its agreement with the quantized file.
        let float_ort = runtime::eval::logits(&mut OrtModel::load(&float_path, 2)?, test, pre, 256, "ORT float student")?;
        let fake_quant = quantized.student.logits(test, pre, 256)?;
        let quant_ort = runtime::eval::logits(&mut OrtModel::load(&path, 2)?, test, pre, 256, "ORT quantized student")?;
        let top1 = |l: &Tensor| metrics::top_k(l, &test.labels, 1);
        let latency = self.latency(&float_path, &path)?;
        let float_file_bytes = std::fs::metadata(&float_path)?.len();
        let record = QuantizationRecord {
            integer_layers: exported.layers.iter().filter(|l| l.integer_kernel).count(),
            layers: exported.layers,
            runtime_ops: exported.runtime_ops,
            padded_depthwise: exported.padded_depthwise,
            integer_pools: exported.integer_pools,
            training,
            baseline,
            compression: float_file_bytes as f64 / file.bytes as f64,
            file,
            float_file_bytes,
            images: test.len(),
            top1_float_tch: float_fidelity.top1_tch,
            top1_float_ort: float_fidelity.top1_ort,
            top1_fake_quant_tch: top1(&fake_quant),
            top1_quantized_ort: top1(&quant_ort),
            top1_agreement_fake_quant_vs_ort: metrics::agreement(&fake_quant, &quant_ort),
            top1_agreement_float_vs_quantized_ort: metrics::agreement(&float_ort, &quant_ort),
            max_abs_diff_fake_quant_vs_ort: metrics::max_abs_diff(&fake_quant, &quant_ort),
            latency_rounds: self.q.latency.rounds,
            latency,
        };
        eprintln!("{}", summary(&record));
        Ok(record)
    }
}

/// What the file stores, e.g. `int8` or `int8 (int4 values in 12 layers)`.
fn storage_summary(layers: &[crate::export::quantized::LayerRecord]) -> String {
    let mut low: std::collections::BTreeMap<u32, usize> = Default::default();
    for l in layers.iter().filter(|l| l.weight_bits < 8) {
        *low.entry(l.weight_bits).or_default() += 1;
    }
    let parts: Vec<String> = low.iter().rev().map(|(b, n)| format!("int{b} values in {n} layers")).collect();
    if parts.is_empty() {
        "int8".into()
    } else {
        format!("int8 ({})", parts.join(", "))
    }
}

fn summary(r: &QuantizationRecord) -> String {
    let lat: Vec<String> = r
        .latency
        .iter()
        .map(|l| format!("{} thread(s) batch {} {:.3} vs {:.3} ms ({:.2}×)", l.threads, l.batch, l.float_ms, l.quantized_ms, l.speedup))
        .collect();
    format!(
        "quantize: float {:.2}% → quantized {:.2}% in ONNX Runtime (fake-quant tch {:.2}%, agreement {:.2}%); {}/{} layers on integer kernels; {:.2}× smaller; {}",
        100.0 * r.top1_float_ort,
        100.0 * r.top1_quantized_ort,
        100.0 * r.top1_fake_quant_tch,
        100.0 * r.top1_agreement_fake_quant_vs_ort,
        r.integer_layers,
        r.layers.len(),
        r.compression,
        lat.join(", ")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantized_file_names() {
        let q: crate::recipe::schema::Quantize = serde_yaml::from_str("{weights: 4}").unwrap();
        assert_eq!(super::file_name(&q), "student.w4a8.onnx");
        for (name, ours) in [
            ("student.w4a8.onnx", true),
            ("student.w8a8.onnx", true),
            ("student.onnx", false),
            ("student.wa8.onnx", false),
            ("student.w4a8.onnx.bak", false),
            ("student.wxa8.onnx", false),
        ] {
            assert_eq!(super::is_quantized_file(name), ours, "{name}");
        }
    }
}
