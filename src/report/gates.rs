//! Gates: pass/fail rules on the final student that decide exit code 1. Vocabulary after Intel
//! Neural Compressor and Olive: an absolute `min`/`max`, or `max_drop_vs` a reference.

use crate::bad_input;
use crate::recipe::schema::Gate;
use serde::Serialize;
use std::collections::BTreeMap;

/// Metrics a gate may name: the exported file's accuracy in ONNX Runtime (`top1`, `top5`),
/// the tch accuracy (`top1_tch`), the fidelity figures, and with `quantize` the quantized file's
/// accuracy, agreement, compression, share of layers on integer kernels and smallest speedup.
/// References: the teachers, the labels-only baseline, the float student's file (`float_student`).
pub const METRICS: &[&str] = &[
    "top1",
    "top5",
    "top1_tch",
    "top1_agreement_tch_vs_ort",
    "max_rel_diff_tch_vs_ort",
    "quantized_top1",
    "quantized_top1_agreement_tch_vs_ort",
    "quantized_compression",
    "quantized_integer_layer_share",
    "quantized_min_speedup",
    "ort_format_top1_agreement",
];
pub const REFERENCES: &[&str] = &["best_teacher", "teacher_ensemble", "baseline", "float_student"];

#[derive(Debug, Serialize)]
pub struct GateResult {
    pub metric: String,
    pub rule: String,
    pub threshold: f64,
    pub value: f64,
    pub passed: bool,
}

/// Checks a gate's shape at plan time.
pub fn check_spec(g: &Gate) -> anyhow::Result<()> {
    if !METRICS.contains(&g.metric.as_str()) {
        return Err(bad_input!("unknown metric `{}` (known: {})", g.metric, METRICS.join(", ")));
    }
    if let Some(v) = [g.min, g.max, g.value].into_iter().flatten().find(|v| !v.is_finite()) {
        return Err(bad_input!("thresholds must be finite numbers, got {v}"));
    }
    const FRACTIONS: &[&str] =
        &["top1", "top5", "top1_tch", "top1_agreement_tch_vs_ort", "quantized_top1", "quantized_top1_agreement_tch_vs_ort", "quantized_integer_layer_share"];
    if FRACTIONS.contains(&g.metric.as_str()) {
        if let Some(v) = [g.min, g.max, g.value].into_iter().flatten().find(|v| !(0.0..=1.0).contains(v)) {
            return Err(bad_input!("`{}` is a fraction between 0 and 1 (0.75 for 75%); the threshold {v} can never be met as meant", g.metric));
        }
    }
    let rules = [g.min.is_some(), g.max.is_some(), g.max_drop_vs.is_some()].iter().filter(|b| **b).count();
    if rules != 1 {
        return Err(bad_input!("give exactly one of min, max, max_drop_vs (with value)"));
    }
    if let Some(r) = &g.max_drop_vs {
        if !REFERENCES.contains(&r.as_str()) {
            return Err(bad_input!("max_drop_vs: unknown reference `{r}` (known: {})", REFERENCES.join(", ")));
        }
        if g.value.is_none() {
            return Err(bad_input!("max_drop_vs needs `value` (the largest allowed drop)"));
        }
    } else if g.value.is_some() {
        return Err(bad_input!("`value` only goes with max_drop_vs"));
    }
    Ok(())
}

/// Evaluates gates on the measured metrics and references (top-1 of teachers, baseline).
pub fn evaluate(gates: &[Gate], metrics: &BTreeMap<&str, f64>, references: &BTreeMap<&str, f64>) -> anyhow::Result<Vec<GateResult>> {
    gates
        .iter()
        .map(|g| {
            let value = *metrics.get(g.metric.as_str()).ok_or_else(|| anyhow::anyhow!("metric `{}` was not measured", g.metric))?;
            let (rule, threshold, passed) = if let Some(min) = g.min {
                ("min".to_string(), min, value >= min)
            } else if let Some(max) = g.max {
                ("max".to_string(), max, value <= max)
            } else {
                let r = g.max_drop_vs.as_deref().unwrap_or_default();
                let reference = *references.get(r).ok_or_else(|| bad_input!("gate on `{}`: reference `{r}` is not available in this run", g.metric))?;
                let threshold = reference - g.value.unwrap_or(0.0);
                (format!("max_drop_vs {r} ({reference:.4}) by {}", g.value.unwrap_or(0.0)), threshold, value >= threshold)
            };
            Ok(GateResult { metric: g.metric.clone(), rule, threshold, value, passed })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(metric: &str, min: Option<f64>, drop: Option<(&str, f64)>) -> Gate {
        Gate { metric: metric.into(), min, max: None, max_drop_vs: drop.map(|d| d.0.into()), value: drop.map(|d| d.1) }
    }

    #[test]
    fn min_and_relative_drop_gates() {
        let metrics = BTreeMap::from([("top1", 0.80)]);
        let refs = BTreeMap::from([("best_teacher", 0.84)]);
        let r = evaluate(&[gate("top1", Some(0.81), None), gate("top1", None, Some(("best_teacher", 0.05)))], &metrics, &refs).unwrap();
        assert!(!r[0].passed);
        assert!(r[1].passed);
        assert!((r[1].threshold - 0.79).abs() < 1e-12);
        assert!(check_spec(&gate("accuracy", Some(0.5), None)).is_err());
        assert!(check_spec(&gate("top1", Some(0.5), Some(("baseline", 0.1)))).is_err());
        // A percentage where a fraction belongs.
        let e = check_spec(&gate("top1", Some(75.0), None)).unwrap_err();
        assert!(format!("{e}").contains("fraction between 0 and 1"), "{e}");
        assert!(check_spec(&gate("quantized_compression", Some(3.5), None)).is_ok());
    }
}
