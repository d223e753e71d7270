//! `compress validate MODEL.onnx --data DIR`: the CI gate on any exported file. Its accuracy in
//! ONNX Runtime on an image folder, fed as its own metadata says, checked against an absolute
//! minimum and against a reference file; exit 0 when every gate holds, 1 when one fails, 2 for
//! bad input, 3 when the check could not run, with JUnit XML and a GitHub step summary.

use super::model_input::{self, InputArgs, ModelInput};
use crate::bad_input;
use crate::export::metadata::PREPROCESS;
use crate::metrics;
use crate::report::ci::CiReport;
use crate::report::gates::GateResult;
use crate::report::junit;
use crate::runtime::{self, OrtModel};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The ONNX file to check.
    pub model: PathBuf,
    /// ImageFolder with one sub-folder per class.
    #[arg(long)]
    pub data: PathBuf,
    /// Fail unless top-1 is at least this fraction (0.75 for 75%).
    #[arg(long)]
    pub min_top1: Option<f64>,
    /// Fail when top-1 is more than D below REF's on the same images (a fraction: 0.01 is one
    /// point). REF is fed as its own metadata says, else as MODEL is.
    #[arg(long, num_args = 2, value_names = ["REF", "D"])]
    pub max_drop_vs: Option<Vec<String>>,
    /// Write the gates as JUnit XML to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[command(flatten)]
    pub input: InputArgs,
}

/// One file's accuracy on the folder.
pub struct Measured {
    pub images: usize,
    pub skipped: usize,
    pub top1: f64,
    pub top5: f64,
    pub input: ModelInput,
}

/// Loads `path`, resolves how to feed it, and measures it on `dir`.
pub fn measure(path: &Path, dir: &Path, a: &InputArgs, batch: usize, fallback: Option<&ModelInput>) -> anyhow::Result<Measured> {
    if !path.is_file() {
        return Err(bad_input!("model file {} does not exist", path.display()));
    }
    let mut model = OrtModel::load(path, 2)?;
    // A reference without preprocessing metadata is fed as the checked model is; one whose
    // metadata is there but wrong (or contradicts its input) is an error like any other.
    let input = match fallback.filter(|_| model.custom_metadata(PREPROCESS).is_none()) {
        Some(f) => ModelInput { origin: "the checked model's input", class_names: None, ..f.clone() },
        None => model_input::resolve(path, &model, a)?,
    };
    let feed = model_input::folder_feed(dir, &input, a)?;
    if let Some(classes) = model.output_shape().and_then(|s| s.last().copied()).filter(|c| *c > 0) {
        if (feed.class_names().len() as i64) > classes {
            return Err(bad_input!("--data: {} has {} class folders but {} has {classes} outputs", dir.display(), feed.class_names().len(), path.display()));
        }
    }
    let size = (input.view.size[0], input.view.size[1]);
    let label = path.file_name().map_or("model".into(), |n| n.to_string_lossy().into_owned());
    let out = runtime::eval::feed_logits(&mut model, &feed, size, &input.preprocess, batch, &label)?;
    let top1 = metrics::top_k(&out.logits, &out.labels, 1);
    let top5 = metrics::top_k(&out.logits, &out.labels, 5);
    Ok(Measured { images: out.labels.size()[0] as usize, skipped: out.skipped, top1, top5, input })
}

/// The gates the flags ask for, on the measured figures.
fn gates(a: &ValidateArgs, m: &Measured, reference: Option<(&str, f64, f64)>) -> Vec<GateResult> {
    let mut g = Vec::new();
    if let Some(min) = a.min_top1 {
        g.push(GateResult { metric: "top1".into(), rule: "min".into(), threshold: min, value: m.top1, passed: m.top1 >= min });
    }
    if let Some((name, ref_top1, drop)) = reference {
        let threshold = ref_top1 - drop;
        g.push(GateResult {
            metric: "top1".into(),
            rule: format!("max_drop_vs {name} ({ref_top1:.4}) by {drop}"),
            threshold,
            value: m.top1,
            passed: m.top1 >= threshold,
        });
    }
    g
}

fn fraction(v: f64, flag: &str) -> anyhow::Result<f64> {
    if !(0.0..=1.0).contains(&v) {
        return Err(bad_input!("{flag} is a fraction between 0 and 1 (0.75 for 75%), got {v}"));
    }
    Ok(v)
}

pub fn run(a: &ValidateArgs) -> anyhow::Result<i32> {
    let ci = CiReport {
        junit: a.junit.as_deref(),
        title: format!("compress validate {}", a.model.display()),
        classname: "compress.validate",
        started: Instant::now(),
        properties: vec![("model".into(), a.model.display().to_string()), ("data".into(), a.data.display().to_string())],
    };
    checked(a, &ci).inspect_err(|err| ci.failed(err))
}

fn checked(a: &ValidateArgs, ci: &CiReport) -> anyhow::Result<i32> {
    if let Some(min) = a.min_top1 {
        fraction(min, "--min-top1")?;
    }
    let drop = match a.max_drop_vs.as_deref() {
        Some([reference, d]) => {
            let d: f64 = d.parse().map_err(|_| bad_input!("--max-drop-vs {reference} {d}: the drop must be a number (a fraction: 0.01 is one point)"))?;
            Some((PathBuf::from(reference), fraction(d, "--max-drop-vs's drop")?))
        }
        Some(other) => return Err(bad_input!("--max-drop-vs takes REF.onnx and a drop, got {} values", other.len())),
        None => None,
    };
    if a.batch == 0 {
        return Err(bad_input!("--batch must be positive"));
    }
    let m = measure(&a.model, &a.data, &a.input, a.batch, None)?;
    let reference = match &drop {
        Some((path, d)) => {
            // The reference is fed as its own file says; only a file without metadata borrows
            // the checked model's input (flags apply to the checked model).
            let r =
                measure(path, &a.data, &InputArgs { workers: a.input.workers, skip_bad: a.input.skip_bad, ..InputArgs::default() }, a.batch, Some(&m.input))?;
            Some((path.display().to_string(), r.top1, *d))
        }
        None => None,
    };
    let gates = gates(a, &m, reference.as_ref().map(|(n, t, d)| (n.as_str(), *t, *d)));
    let passed = gates.iter().all(|g| g.passed);
    let figures = vec![
        ("images".to_string(), format!("{} ({} left out as unreadable)", m.images, m.skipped)),
        ("top-1".to_string(), format!("{:.2}%", 100.0 * m.top1)),
        ("top-5".to_string(), format!("{:.2}%", 100.0 * m.top5)),
        ("input".to_string(), format!("{} ({})", describe(&m.input), m.input.origin)),
    ];
    ci.finished(junit::gate_cases(ci.classname, &gates), passed, &figures, &gates)?;
    if a.json {
        let v = serde_json::json!({
            "model": a.model, "data": a.data, "images": m.images, "skipped": m.skipped, "top1": m.top1, "top5": m.top5,
            "input": {"preprocess": m.input.preprocess, "view": m.input.view, "from": m.input.origin},
            "reference": reference.as_ref().map(|(n, t, _)| serde_json::json!({"model": n, "top1": t})),
            "gates": gates, "passed": passed,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{}: {} images, top-1 {:.2}%, top-5 {:.2}%; input {} ({})",
            a.model.display(),
            m.images,
            100.0 * m.top1,
            100.0 * m.top5,
            describe(&m.input),
            m.input.origin
        );
        if let Some((n, t, _)) = &reference {
            println!("reference {n}: top-1 {:.2}%", 100.0 * t);
        }
    }
    eprintln!("{}", verdict(&gates));
    Ok(if passed { 0 } else { 1 })
}

/// The final line: PASS with the gates held, or FAIL naming each failed gate with its value
/// and threshold.
pub fn verdict(gates: &[GateResult]) -> String {
    let failed: Vec<String> = gates.iter().filter(|g| !g.passed).map(junit::gate_message).collect();
    match (failed.is_empty(), gates.len()) {
        (true, 0) => "PASS: no gate given (--min-top1, --max-drop-vs)".into(),
        (true, n) => format!("PASS: {n} gate(s) held"),
        (false, _) => format!("FAIL: {}", failed.join("; ")),
    }
}

fn describe(i: &ModelInput) -> String {
    let p = &i.preprocess;
    let view = match (i.view.resize_shorter, i.view.center_crop) {
        (Some(r), Some(c)) => format!("resize {r}, centre crop {c}"),
        (None, Some(c)) => format!("centre crop {c}"),
        _ => format!("resized to {}x{}", i.view.size[1], i.view.size[0]),
    };
    format!("{view}, {:?}, scale {:.6}, mean {:?}, std {:?}", p.layout, p.scale, p.mean, p.std)
}
