//! Checkpoints: after every epoch the student's tensors (parameters and BatchNorm state), the
//! optimizer's momentum buffers, the data generator's state and the metrics so far. The tensors
//! go to a new `state-<epoch>.safetensors`, then `last.json` is replaced atomically to point at
//! it, so a kill at any moment leaves the previous checkpoint intact. `--resume` refuses a
//! checkpoint made with another recipe or other teachers.

use super::record::EpochMetrics;
use crate::bad_input;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tch::Tensor;

/// What a checkpoint must match to be resumed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub recipe_sha256: String,
    pub teacher_sha256: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    pub identity: Identity,
    /// The last completed epoch (1-based).
    pub epoch: usize,
    pub step: usize,
    pub rng: [u64; 4],
    pub epochs: Vec<EpochMetrics>,
    pub best_top1: f64,
    pub best_epoch: usize,
    pub state_file: String,
}

pub struct Checkpoint {
    pub meta: Meta,
    pub model: HashMap<String, Tensor>,
    pub momentum: HashMap<String, Tensor>,
}

const MODEL: &str = "model/";
const MOMENTUM: &str = "momentum/";

pub fn save(dir: &Path, meta: &Meta, model: &[(String, Tensor)], momentum: &[(String, Tensor)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let named: Vec<(String, Tensor)> = model
        .iter()
        .map(|(n, t)| (format!("{MODEL}{n}"), t.detach().to_device(tch::Device::Cpu)))
        .chain(momentum.iter().map(|(n, t)| (format!("{MOMENTUM}{n}"), t.detach().to_device(tch::Device::Cpu))))
        .collect();
    let tmp = dir.join(format!(".{}.tmp", meta.state_file));
    Tensor::write_safetensors(&named, &tmp)?;
    std::fs::rename(&tmp, dir.join(&meta.state_file))?;
    crate::fsio::write_atomic(&dir.join("last.json"), serde_json::to_string_pretty(meta)?.as_bytes())?;
    // Older state files are no longer referenced.
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("state-") && name != meta.state_file {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// The last checkpoint in `dir`, if there is one; refuses one made for another recipe/teachers.
pub fn load(dir: &Path, identity: &Identity) -> anyhow::Result<Option<Checkpoint>> {
    let meta_path = dir.join("last.json");
    if !meta_path.exists() {
        return Ok(None);
    }
    let meta: Meta = serde_json::from_slice(&std::fs::read(&meta_path)?)
        .map_err(|e| bad_input!("checkpoint {} is unreadable: {e}", meta_path.display()))?;
    if meta.identity.recipe_sha256 != identity.recipe_sha256 {
        return Err(bad_input!("cannot resume from {}: the recipe changed since it was written (pass --overwrite to start over)", dir.display()));
    }
    if meta.identity.teacher_sha256 != identity.teacher_sha256 {
        return Err(bad_input!("cannot resume from {}: the teachers changed since it was written (pass --overwrite to start over)", dir.display()));
    }
    let mut model = HashMap::new();
    let mut momentum = HashMap::new();
    for (name, t) in Tensor::read_safetensors(dir.join(&meta.state_file))? {
        if let Some(n) = name.strip_prefix(MODEL) {
            model.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix(MOMENTUM) {
            momentum.insert(n.to_string(), t);
        }
    }
    Ok(Some(Checkpoint { meta, model, momentum }))
}
