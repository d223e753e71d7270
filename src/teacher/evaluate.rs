//! Teacher evaluation on the test set: accuracy through our import and through ONNX Runtime,
//! their top-1 agreement, and the ensemble's accuracy by mean probabilities and by majority vote.

use crate::data::feed::TestSet;
use crate::host::HostRead;
use crate::metrics;
use crate::runtime::{self, OrtModel};
use serde::Serialize;
use tch::{Kind, Tensor};

/// One teacher and what it scores on the test set.
#[derive(Debug, Serialize)]
pub struct TeacherRecord {
    pub name: String,
    pub path: String,
    pub sha256: String,
    pub opset: i64,
    pub parameters: i64,
    pub execution: String,
    pub top1_tch: f64,
    pub top1_ort: f64,
    pub top1_agreement_tch_vs_ort: f64,
    /// How far our outputs are from ONNX Runtime's on the test set, on the logit scale (log
    /// probabilities for a teacher that outputs probabilities): about 1e-6 for a float32
    /// teacher, the rounding of the narrow type for a bf16 or fp16 one.
    pub logits_mean_abs_diff_tch_vs_ort: f64,
    pub logits_max_abs_diff_tch_vs_ort: f64,
}

/// What the teachers score on the test set.
pub struct TeacherEvaluation {
    pub records: Vec<TeacherRecord>,
    /// Top-1 of the mean of the teachers' probabilities.
    pub ensemble_mean: Option<f64>,
    /// Top-1 of the majority vote of their predictions, ties to the earliest teacher
    /// (methods.md §1.4, the reference's `validate_multi`).
    pub ensemble_vote: Option<f64>,
}

/// The majority vote of per-teacher predictions [K, N] over `classes`; a tie goes to the
/// class of the first teacher (in order) that voted for one of the tied classes.
pub fn majority_vote(preds: &Tensor, classes: i64) -> Tensor {
    let counts = preds.one_hot(classes).sum_dim_intlist(0, false, Kind::Int64); // [N, C]
    let top = counts.amax(&[1i64][..], true); // [N, 1]
    let k = preds.size()[0];
    let mut chosen = preds.get(0).shallow_clone();
    let mut done = counts.gather(1, &chosen.unsqueeze(1), false).eq_tensor(&top).squeeze_dim(1);
    for i in 1..k {
        let candidate = preds.get(i);
        let is_top = counts.gather(1, &candidate.unsqueeze(1), false).eq_tensor(&top).squeeze_dim(1);
        let take = is_top.logical_and(&done.logical_not());
        chosen = candidate.where_self(&take, &chosen);
        done = done.logical_or(&is_top);
    }
    chosen
}

/// Each teacher's accuracy through our import and through ONNX Runtime, their agreement, and
/// the ensemble's accuracy.
pub fn evaluate_teachers(teachers: &[super::Teacher], tests: &TestSet) -> anyhow::Result<TeacherEvaluation> {
    let mut records = Vec::new();
    let mut probs: Option<Tensor> = None;
    let mut preds = Vec::new();
    for t in teachers {
        // Each teacher sees the test view at its own size.
        let test = tests.at(t.input_hw)?;
        let mut ours = Vec::new();
        let mut start = 0;
        while start < test.len() as i64 {
            let len = 256.min(test.len() as i64 - start);
            ours.push(t.logits(&test.images.narrow(0, start, len))?.to_device(tch::Device::Cpu));
            start += len;
        }
        let ours = Tensor::cat(&ours, 0);
        let mut ort = OrtModel::load(&t.path, 2)?;
        let theirs = t.as_logits(runtime::eval::logits(&mut ort, test, &t.preprocess, 256, &format!("ORT {}", t.name))?.flatten(1, -1));
        preds.push(ours.argmax(1, false));
        let p = ours.softmax(1, Kind::Float);
        probs = Some(match probs.take() {
            Some(s) => s + p,
            None => p,
        });
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
            logits_mean_abs_diff_tch_vs_ort: metrics::mean_abs_diff(&ours, &theirs),
            logits_max_abs_diff_tch_vs_ort: metrics::max_abs_diff(&ours, &theirs),
        };
        eprintln!(
            "teacher `{}`: top-1 {:.2}% (ORT {:.2}%, agreement {:.2}%, logits mean abs diff {:.2e}, max {:.2e})",
            rec.name,
            100.0 * rec.top1_tch,
            100.0 * rec.top1_ort,
            100.0 * rec.top1_agreement_tch_vs_ort,
            rec.logits_mean_abs_diff_tch_vs_ort,
            rec.logits_max_abs_diff_tch_vs_ort
        );
        records.push(rec);
    }
    let classes = probs.as_ref().map_or(0, |p| p.size()[1]);
    for w in suspicious(&records, classes) {
        eprintln!("warning: {w}");
    }
    // Every view of the test set holds the same images in the same order.
    let labels = &tests.student().labels;
    let ensemble_mean = probs.as_ref().map(|p| metrics::top_k(p, labels, 1));
    let ensemble_vote = probs.as_ref().map(|p| {
        let vote = majority_vote(&Tensor::stack(&preds, 0), p.size()[1]);
        vote.eq_tensor(labels).to_kind(Kind::Double).mean(Kind::Double).read_f64()
    });
    Ok(TeacherEvaluation { records, ensemble_mean, ensemble_vote })
}

/// Warnings for teachers that score near chance on the test set (under 1.5× chance), or under
/// half of the best teacher's top-1: almost always the teacher's input, not the teacher.
pub fn suspicious(records: &[TeacherRecord], classes: i64) -> Vec<String> {
    if classes < 2 {
        return vec![];
    }
    let chance = 1.0 / classes as f64;
    let best = records.iter().map(|r| r.top1_tch).fold(0.0, f64::max);
    records
        .iter()
        .filter_map(|r| {
            let why = if r.top1_tch < 1.5 * chance {
                format!("near chance ({:.1}% for {classes} classes)", 100.0 * chance)
            } else if r.top1_tch < 0.5 * best {
                format!("under half of the best teacher's {:.2}%", 100.0 * best)
            } else {
                return None;
            };
            Some(format!(
                "teacher `{}` scores {:.2}% on the test set, {why}. The usual causes: its input.mean/input.std or input.scale \
                 are not those it was trained with (see its model card), input.layout is wrong, its output is probabilities \
                 declared as logits, or its class order differs from the data's class folders",
                r.name,
                100.0 * r.top1_tch
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tch::Tensor;

    fn record(name: &str, top1: f64) -> super::TeacherRecord {
        super::TeacherRecord {
            name: name.into(),
            path: String::new(),
            sha256: String::new(),
            opset: 13,
            parameters: 0,
            execution: String::new(),
            top1_tch: top1,
            top1_ort: top1,
            top1_agreement_tch_vs_ort: 1.0,
            logits_mean_abs_diff_tch_vs_ort: 0.0,
            logits_max_abs_diff_tch_vs_ort: 0.0,
        }
    }

    #[test]
    fn near_chance_and_far_behind_teachers_are_warned_about() {
        // The real case: biasfield with wrong normalisation scored 21.8% beside teachers at ~78%.
        let w = super::suspicious(&[record("good", 0.78), record("wrong_std", 0.218), record("weak", 0.12)], 10);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("`wrong_std` scores 21.80%") && w[0].contains("under half of the best teacher's 78.00%"), "{}", w[0]);
        assert!(w[1].contains("`weak`") && w[1].contains("near chance (10.0% for 10 classes)") && w[1].contains("input.mean"), "{}", w[1]);
        assert!(super::suspicious(&[record("a", 0.6), record("b", 0.45)], 10).is_empty());
    }

    #[test]
    fn majority_vote_breaks_ties_towards_the_first_teacher() {
        // Three teachers, four samples: a majority, a three-way tie (teacher 0's class wins), a
        // majority against teacher 0, unanimity.
        let preds = Tensor::from_slice(&[1i64, 0, 2, 3, 1, 1, 0, 3, 2, 2, 0, 3]).reshape([3, 4]);
        let vote = super::majority_vote(&preds, 4);
        assert_eq!(crate::host::vec::<i64>(&vote).unwrap(), vec![1, 0, 0, 3]);
    }
}
