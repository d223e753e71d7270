//! `compress zoo [ARCH]`: the built-in student architectures. Without ARCH, a table of every
//! architecture with its family, default image size and parameter count; with ARCH, its named
//! taps (`stage1` … `stageN`, `pooled`, `logits`) with their shapes, and `--export FILE` writes
//! the freshly initialised model as ONNX exactly as a trained student would be exported.

use crate::student::student_taps;
use crate::zoo::{self, ArchSpec};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use tch::Device;

#[derive(Args, Debug)]
pub struct ZooArgs {
    /// An architecture name (omit to list them all).
    pub arch: Option<String>,
    /// Number of classes of the classifier.
    #[arg(long, default_value_t = 10)]
    pub classes: i64,
    /// Width multiplier.
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    /// Input image size (default: 32 for CIFAR-style, 224 for ImageNet-style architectures).
    #[arg(long)]
    pub image_size: Option<i64>,
    /// Seed of the random initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
    /// Write the initialised model to this ONNX file (refuses to replace one without --overwrite).
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// Opset of the exported file (13 to 21).
    #[arg(long, default_value_t = 13)]
    pub opset: i64,
    /// Keep BatchNormalization nodes instead of folding them into the convolutions.
    #[arg(long)]
    pub no_fold: bool,
    /// Replace an existing --export file.
    #[arg(long)]
    pub overwrite: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: &ZooArgs) -> anyhow::Result<i32> {
    if a.classes < 1 {
        return Err(crate::bad_input!("--classes must be at least 1, got {}", a.classes));
    }
    match &a.arch {
        None => list(a),
        Some(name) => describe(a, name),
    }
}

fn spec(a: &ZooArgs, default_size: i64) -> ArchSpec {
    ArchSpec { num_classes: a.classes, width: a.width, image_size: a.image_size.unwrap_or(default_size) }
}

fn list(a: &ZooArgs) -> anyhow::Result<i32> {
    let mut rows = Vec::new();
    for arch in zoo::ARCHS {
        tch::manual_seed(a.seed);
        let graph = zoo::build(arch.name, &spec(a, arch.image_size), Device::Cpu)?;
        rows.push(json!({"arch": arch.name, "family": arch.family, "image_size": arch.image_size, "parameters": graph.parameter_count()}));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{:<22} {:<26} {:>6} {:>12}", "arch", "family", "image", "parameters");
        for r in &rows {
            println!("{:<22} {:<26} {:>6} {:>12}", r["arch"].as_str().unwrap_or(""), r["family"].as_str().unwrap_or(""), r["image_size"], r["parameters"]);
        }
        println!("({} classes, width {})", a.classes, a.width);
    }
    Ok(0)
}

fn describe(a: &ZooArgs, name: &str) -> anyhow::Result<i32> {
    let arch = zoo::find(name)?;
    let spec = spec(a, arch.image_size);
    if let Some(path) = &a.export {
        if !(13..=21).contains(&a.opset) {
            return Err(crate::bad_input!("--opset must be between 13 and 21, got {}", a.opset));
        }
        if path.exists() && !a.overwrite {
            return Err(crate::bad_input!("{} exists; pass --overwrite to replace it", path.display()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
            return Err(crate::bad_input!("--export {}: folder {} does not exist", path.display(), dir.display()));
        }
    }
    tch::manual_seed(a.seed);
    let graph = zoo::build(name, &spec, Device::Cpu)?;
    let taps = student_taps(&graph)?;
    let mut info = json!({
        "arch": name, "family": arch.family, "classes": spec.num_classes, "width": spec.width,
        "image_size": spec.image_size, "parameters": graph.parameter_count(), "taps": taps,
    });
    if let Some(path) = &a.export {
        let folded = crate::export::write_onnx(&graph, a.opset, !a.no_fold, &[(crate::export::metadata::ZOO_ARCH, name.to_string())], path)?;
        info["export"] = json!({"path": path, "opset": a.opset, "batch_norm_folded": folded});
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!(
            "{name} ({}): {} parameters, {} classes, width {}, {}×{} input",
            arch.family, info["parameters"], spec.num_classes, spec.width, spec.image_size, spec.image_size
        );
        println!("taps:");
        for t in &taps {
            println!("  {:<8} {:<40} {:?}", t.alias, t.value, t.shape);
        }
        if let Some(path) = &a.export {
            println!("wrote {} (opset {}, {} BatchNorms folded)", path.display(), a.opset, info["export"]["batch_norm_folded"]);
        }
    }
    Ok(0)
}
