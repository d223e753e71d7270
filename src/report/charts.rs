//! The charts of a run's report, drawn beside `report.md` and embedded in it: test accuracy per
//! epoch (the student, the labels-only baseline, the teachers and their ensemble as reference
//! lines), teacher weights per epoch (adaptive methods), and for quantized runs top-1 against
//! file size and against latency for the float and the quantized file.

use super::plots::{self, Point, Reference, Series};
use super::Report;
use crate::distill::record::TrainingRecord;
use std::path::Path;

/// Every file name a run's charts may take (the output folder's manifest lists them).
pub const FILES: &[&str] = &["accuracy.png", "teacher_weights.png", "accuracy_size.png", "accuracy_latency.png"];

/// A chart drawn: its title and file name (in the output folder).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Chart {
    pub title: String,
    pub file: String,
}

fn curve(label: &str, t: &TrainingRecord) -> Series {
    Series { label: label.into(), points: t.epochs.iter().map(|e| (e.epoch as f64, e.test_top1)).collect() }
}

/// Draws the charts `r` has data for into `out`. A chart that cannot be drawn is reported on
/// stderr and left out: the run's figures are all in the report either way.
pub fn draw(out: &Path, r: &Report) -> Vec<Chart> {
    let mut drawn = Vec::new();
    let mut attempt = |title: &str, file: &str, f: &dyn Fn(&Path) -> anyhow::Result<()>| match f(&out.join(file)) {
        Ok(()) => drawn.push(Chart { title: title.into(), file: file.into() }),
        Err(e) => eprintln!("warning: chart {file} not drawn: {e:#}"),
    };

    let mut series = vec![curve(&format!("student ({})", r.training.method), &r.training)];
    if let Some(b) = &r.baseline {
        series.push(curve("baseline (labels only)", b));
    }
    let mut refs: Vec<Reference> = r.teachers.iter().map(|t| Reference { label: format!("teacher {}", t.name), y: t.top1_tch }).collect();
    if let Some(e) = r.teacher_ensemble_top1.filter(|_| r.teachers.len() > 1) {
        refs.push(Reference { label: "teacher ensemble".into(), y: e });
    }
    attempt("Test top-1 per epoch", "accuracy.png", &|p| plots::line_chart(p, "Test top-1 per epoch", "epoch", "top-1 (%)", &series, &refs, true));

    let weights: Vec<(usize, &Vec<f64>)> = r.training.epochs.iter().filter_map(|e| e.teacher_weights.as_ref().map(|w| (e.epoch, w))).collect();
    if let Some((_, first)) = weights.first() {
        // Named when the method weighs every teacher of the run, in order; numbered otherwise.
        let names: Vec<String> = if first.len() == r.teachers.len() {
            r.teachers.iter().map(|t| t.name.clone()).collect()
        } else {
            (0..first.len()).map(|i| format!("teacher {i}")).collect()
        };
        let series: Vec<Series> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Series { label: n.clone(), points: weights.iter().filter_map(|(ep, w)| w.get(i).map(|v| (*ep as f64, *v))).collect() })
            .collect();
        let title = format!("Teacher weights per epoch ({})", r.training.method);
        attempt(&title, "teacher_weights.png", &|p| plots::line_chart(p, &title, "epoch", "mean weight", &series, &[], false));
    }

    if let Some(q) = &r.quantization {
        let bits = q.file.path.rsplit('/').next().unwrap_or("quantized").trim_end_matches(".onnx").trim_start_matches("student.").to_string();
        let size = vec![
            Point { group: "float".into(), label: "student.onnx".into(), x: q.float_file_bytes as f64, y: q.top1_float_ort },
            Point { group: "quantized".into(), label: bits.clone(), x: q.file.bytes as f64, y: q.top1_quantized_ort },
        ];
        attempt("Top-1 against file size", "accuracy_size.png", &|p| {
            plots::scatter_chart(p, "Top-1 against file size", "file size (log scale)", "top-1 in ONNX Runtime (%)", &size, true, plots::bytes)
        });
        // One colour per file and thread count, one point per batch size.
        let mut latency = Vec::new();
        for l in &q.latency {
            let threads = if l.threads == 1 { "1 thread".to_string() } else { format!("{} threads", l.threads) };
            let label = format!("batch {}", l.batch);
            latency.push(Point { group: format!("float, {threads}"), label: label.clone(), x: l.float_ms, y: q.top1_float_ort });
            latency.push(Point { group: format!("{bits}, {threads}"), label, x: l.quantized_ms, y: q.top1_quantized_ort });
        }
        latency.sort_by(|a, b| a.group.cmp(&b.group));
        if !latency.is_empty() {
            attempt("Top-1 against latency in ONNX Runtime", "accuracy_latency.png", &|p| {
                plots::scatter_chart(
                    p,
                    "Top-1 against latency in ONNX Runtime",
                    "milliseconds per batch (log scale)",
                    "top-1 in ONNX Runtime (%)",
                    &latency,
                    true,
                    plots::significant,
                )
            });
        }
    }
    drawn
}
