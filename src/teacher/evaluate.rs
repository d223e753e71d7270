//! Teacher evaluation on the test set: accuracy through our import and through ONNX Runtime,
//! their top-1 agreement, and the accuracy of the ensemble's mean probabilities.

use crate::data::ImageSet;
use crate::metrics;
use crate::recipe::Plan;
use crate::report::TeacherRecord;
use crate::runtime::{self, OrtModel};
use tch::{Kind, Tensor};

/// Each teacher's accuracy through our import and through ONNX Runtime, their agreement, and
/// the ensemble's accuracy.
pub fn evaluate_teachers(plan: &Plan, test: &ImageSet) -> anyhow::Result<(Vec<TeacherRecord>, Option<f64>)> {
    let mut records = Vec::new();
    let mut probs: Option<Tensor> = None;
    for t in &plan.teachers {
        let mut ours = Vec::new();
        let mut start = 0;
        while start < test.len() as i64 {
            let len = 256.min(test.len() as i64 - start);
            ours.push(t.logits(&test.images.narrow(0, start, len))?.to_device(tch::Device::Cpu));
            start += len;
        }
        let ours = Tensor::cat(&ours, 0);
        let mut ort = OrtModel::load(&t.path, 2)?;
        let theirs = runtime::eval::logits(&mut ort, test, &t.preprocess, 256, &format!("ORT {}", t.name))?.flatten(1, -1);
        let p = ours.softmax(1, Kind::Float);
        probs = Some(match probs.take() { Some(s) => s + p, None => p });
        let rec = TeacherRecord {
            name: t.name.clone(),
            path: t.path.display().to_string(),
            sha256: t.sha256.clone(),
            opset: t.opset,
            parameters: t.parameters,
            execution: t.execution.clone(),
            top1_tch: metrics::top_k(&ours, &test.labels, 1),
            top1_ort: metrics::top_k(&theirs, &test.labels, 1),
            top1_agreement_tch_vs_ort: metrics::agreement(&ours, &theirs),
        };
        eprintln!("teacher `{}`: top-1 {:.2}% (ORT {:.2}%, agreement {:.2}%)", rec.name, 100.0 * rec.top1_tch, 100.0 * rec.top1_ort, 100.0 * rec.top1_agreement_tch_vs_ort);
        records.push(rec);
    }
    let ensemble = probs.map(|p| metrics::top_k(&p, &test.labels, 1));
    Ok((records, ensemble))
}
