//! The comparison as Markdown: the teachers, then per method the mean ± standard deviation over
//! seeds of its best and final top-1, its paired difference to AVER on the same teachers (per
//! seed, then mean ± standard deviation), and the teacher weights the adaptive methods gave
//! (how peaked they were, MMKD's meta-gradients).

use super::{mean, Comparison, MethodResult, SeedResult};
use std::fmt::Write as _;

/// Sample standard deviation (n − 1); 0 for fewer than two values.
pub fn std_dev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// "mean ± std" of fractions, in percent.
fn pm(v: &[f64]) -> String {
    if v.len() == 1 {
        format!("{:.2}", 100.0 * v[0])
    } else {
        format!("{:.2} ± {:.2}", 100.0 * mean(v), 100.0 * std_dev(v))
    }
}

/// "+mean ± std" of differences of fractions, in percentage points.
fn signed_pm(v: &[f64]) -> String {
    if v.len() == 1 {
        format!("{:+.2}", 100.0 * v[0])
    } else {
        format!("{:+.2} ± {:.2}", 100.0 * mean(v), 100.0 * std_dev(v))
    }
}

/// The baseline a method is paired with: the first AVER row on the same teachers, else, for a
/// single-teacher method, the first KD row on that teacher (AVER over one teacher is KD). None
/// for the baselines themselves, for the labels-only run and when the comparison has no such row.
pub fn baseline<'a>(c: &'a Comparison, m: &MethodResult) -> Option<&'a MethodResult> {
    if m.teachers.is_empty() || m.method == "aver" || m.method == "kd" {
        return None;
    }
    let key = |x: &MethodResult| {
        let mut t = x.teachers.clone();
        t.sort();
        t
    };
    let row = |method: &str| c.methods.iter().find(|b| b.method == method && key(b) == key(m));
    row("aver").or_else(|| if m.teachers.len() == 1 { row("kd") } else { None })
}

/// Per seed, `f(method) − f(baseline)` for the seeds both ran.
fn paired(m: &MethodResult, b: &MethodResult, f: fn(&SeedResult) -> f64) -> Vec<f64> {
    m.seeds.iter().filter_map(|r| b.seeds.iter().find(|x| x.seed == r.seed).map(|x| f(r) - f(x))).collect()
}

fn column(m: &MethodResult, f: fn(&SeedResult) -> f64) -> Vec<f64> {
    m.seeds.iter().map(f).collect()
}

fn teachers_cell(m: &MethodResult) -> String {
    if m.teachers.is_empty() {
        "none".into()
    } else {
        m.teachers.join(", ")
    }
}

/// The comparison as a Markdown report.
pub fn render(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Student {}, {} epochs of batch {} ({} steps per method and seed), {} training and {} test images, device {}, seeds {:?}.\n",
        c.student, c.epochs, c.batch_size, c.steps, c.train_images, c.test_images, c.device, c.seeds
    );
    let _ = writeln!(s, "| teacher | top-1 (tch) | top-1 (ONNX Runtime) |\n|---|---|---|");
    for t in &c.teachers {
        let _ = writeln!(s, "| {} | {:.2}% | {:.2}% |", t.name, 100.0 * t.top1_tch, 100.0 * t.top1_ort);
    }
    if let Some(e) = c.ensemble_vote_top1 {
        let _ = writeln!(s, "| ensemble, majority vote | {:.2}% | |", 100.0 * e);
    }
    if let Some(e) = c.ensemble_mean_top1 {
        let _ = writeln!(s, "| ensemble, mean probabilities | {:.2}% | |", 100.0 * e);
    }
    let _ = writeln!(
        s,
        "\nTop-1 in %, mean ± standard deviation over the seeds. \"Best\" is the best epoch's test accuracy (the papers' metric), \"final\" the last epoch's. \
         Δ is the paired difference to AVER on the same teachers (KD for a single-teacher method): per seed, then mean ± standard deviation, in points; \
         it is within noise when its standard deviation is as large as it is. ONNX Runtime runs the exported file of the final weights. \
         Seconds per epoch are each method's own steps and test evaluation; the teachers ran once per batch for all methods, {:.1} s per epoch.\n",
        c.teacher_seconds_per_epoch
    );
    let _ = writeln!(
        s,
        "| method | teachers | best | Δ best vs AVER | best epoch | final | Δ final vs AVER | final (ORT) | s/epoch |\n|---|---|---|---|---|---|---|---|---|"
    );
    for m in &c.methods {
        let delta = |f: fn(&SeedResult) -> f64| baseline(c, m).map_or("—".to_string(), |b| signed_pm(&paired(m, b, f)));
        let best_epochs = column(m, |r| r.best_epoch as f64);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {:.1} |",
            m.label,
            teachers_cell(m),
            pm(&column(m, |r| r.best_top1_tch)),
            delta(|r| r.best_top1_tch),
            mean(&best_epochs),
            pm(&column(m, |r| r.final_top1_tch)),
            delta(|r| r.final_top1_tch),
            pm(&column(m, |r| r.final_top1_ort)),
            mean(&column(m, |r| r.seconds_per_epoch))
        );
    }
    weights_table(&mut s, c);
    s
}

/// Teacher weights at the last epoch, mean over seeds: per teacher, and the share of samples
/// where one teacher took more than 0.9 (logit and feature level); MMKD's meta-gradient norms.
fn weights_table(s: &mut String, c: &Comparison) {
    let last = |r: &SeedResult| r.epochs.last().cloned();
    let rows: Vec<&MethodResult> = c.methods.iter().filter(|m| m.seeds.iter().filter_map(last).any(|e| e.teacher_weight_std.is_some())).collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nTeacher weights in the last epoch, mean over seeds: the mean weight per teacher (in the order listed), the share of samples where one teacher \
         took more than 0.9 of the weight (\"peaked\"), the same at the feature level, each teacher's unweighted feature loss, and the norm of each MMKD \
         weight network's meta-gradient (mean over the epoch's meta steps).\n"
    );
    let _ = writeln!(
        s,
        "| method | logit weights | peaked | feature weights | feature peaked | feature loss per teacher | meta-grad logit net | meta-grad feature net |\n|---|---|---|---|---|---|---|---|"
    );
    for m in rows {
        let epochs: Vec<_> = m.seeds.iter().filter_map(last).collect();
        let vector = |f: &dyn Fn(&crate::distill::record::EpochMetrics) -> Option<Vec<f64>>, digits: usize| {
            let vs: Vec<Vec<f64>> = epochs.iter().filter_map(f).collect();
            if vs.is_empty() {
                return "—".to_string();
            }
            let k = vs[0].len();
            (0..k).map(|i| format!("{:.*}", digits, mean(&vs.iter().map(|v| v[i]).collect::<Vec<_>>()))).collect::<Vec<_>>().join(" / ")
        };
        let scalar = |f: &dyn Fn(&crate::distill::record::EpochMetrics) -> Option<f64>, fmt: fn(f64) -> String| {
            let vs: Vec<f64> = epochs.iter().filter_map(f).collect();
            if vs.is_empty() {
                "—".to_string()
            } else {
                fmt(mean(&vs))
            }
        };
        let percent = |v: f64| format!("{:.0}%", 100.0 * v);
        let sci = |v: f64| format!("{v:.1e}");
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            m.label,
            vector(&|e| e.teacher_weights.clone(), 2),
            scalar(&|e| e.teacher_weight_peaked, percent),
            vector(&|e| e.feature_weights.clone(), 2),
            scalar(&|e| e.feature_weight_peaked, percent),
            vector(&|e| e.feature_losses.clone(), 3),
            scalar(&|e| e.method_figures.get("logit_net_meta_grad_norm").copied(), sci),
            scalar(&|e| e.method_figures.get("feature_net_meta_grad_norm").copied(), sci),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(seed: u64, best: f64) -> SeedResult {
        SeedResult {
            seed,
            best_top1_tch: best,
            best_epoch: 3,
            best_top1_ort: best,
            final_top1_tch: best - 0.01,
            final_top1_ort: best - 0.01,
            final_agreement: 1.0,
            seconds_per_epoch: 1.0,
            epochs: vec![],
        }
    }

    fn method(label: &str, method: &str, teachers: &[&str], best: &[f64]) -> MethodResult {
        MethodResult {
            label: label.into(),
            method: method.into(),
            teachers: teachers.iter().map(|t| t.to_string()).collect(),
            seeds: best.iter().enumerate().map(|(i, b)| seed(i as u64, *b)).collect(),
        }
    }

    fn comparison(methods: Vec<MethodResult>) -> Comparison {
        Comparison {
            recipe: "r.yaml".into(),
            device: "cpu".into(),
            train_images: 100,
            test_images: 100,
            epochs: 3,
            batch_size: 10,
            steps: 30,
            student: "resnet8".into(),
            seeds: vec![0, 1, 2],
            teachers: vec![],
            ensemble_mean_top1: None,
            ensemble_vote_top1: None,
            teacher_seconds_per_epoch: 0.5,
            methods,
        }
    }

    #[test]
    fn sample_standard_deviation() {
        assert_eq!(std_dev(&[0.5]), 0.0);
        assert!((std_dev(&[1.0, 2.0, 3.0, 4.0]) - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn differences_are_paired_per_seed_against_aver_on_the_same_teachers() {
        let c = comparison(vec![
            method("aver", "aver", &["a", "b"], &[0.60, 0.62, 0.70]),
            method("kd", "kd", &["a"], &[0.55, 0.56, 0.57]),
            method("dkd", "dkd", &["a"], &[0.56, 0.58, 0.60]),
            method("mmkd", "mmkd", &["b", "a"], &[0.61, 0.64, 0.70]),
            method("ebkd", "ebkd", &["a", "c"], &[0.61, 0.64, 0.70]),
        ]);
        let by = |l: &str| c.methods.iter().find(|m| m.label == l).unwrap();
        // Teacher order does not matter; per-seed differences 1, 2 and 0 points.
        let mmkd = paired(by("mmkd"), baseline(&c, by("mmkd")).unwrap(), |r| r.best_top1_tch);
        assert_eq!(baseline(&c, by("mmkd")).unwrap().label, "aver");
        assert!(mmkd.iter().zip([0.01, 0.02, 0.0]).all(|(a, b)| (a - b).abs() < 1e-12), "{mmkd:?}");
        // A single-teacher method pairs with KD on its teacher; the baselines pair with nobody.
        assert_eq!(baseline(&c, by("dkd")).unwrap().label, "kd");
        assert!(baseline(&c, by("kd")).is_none() && baseline(&c, by("aver")).is_none());
        assert!(baseline(&c, by("ebkd")).is_none());
        let table = render(&c);
        assert!(table.contains("| mmkd | b, a | 65.00 ± 4.58 | +1.00 ± 1.00 |"), "{table}");
        assert!(table.contains("| ebkd | a, c | 65.00 ± 4.58 | — |"), "{table}");
    }
}
