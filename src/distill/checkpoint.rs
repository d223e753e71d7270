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
    let meta: Meta = serde_json::from_slice(&std::fs::read(&meta_path)?).map_err(|e| bad_input!("checkpoint {} is unreadable: {e}", meta_path.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Accuracies and losses as training produces them: many quotients and sums.
    fn epochs() -> Vec<EpochMetrics> {
        (1..=600usize)
            .map(|i| EpochMetrics {
                epoch: i,
                lr: 0.05 * (0.5 + 0.5 * (i as f64 / 600.0 * std::f64::consts::PI).cos()),
                losses: [("ce".to_string(), (i as f64).ln() / 7.0), ("kd".to_string(), 1.0 / (i as f64 + 0.3))].into(),
                train_top1: (i * 37 % 6400) as f64 / 6400.0,
                test_top1: (i * 13 % 2000) as f64 / 2000.0,
                teacher_weights: Some(vec![1.0 / 3.0 + i as f64 * 1e-7, 0.2 / i as f64]),
                teacher_weight_std: None,
                teacher_top_share: None,
                seconds: i as f64 * 0.731,
            })
            .collect()
    }

    /// A resumed run must report exactly the figures of an uninterrupted one: every float of a
    /// checkpoint reads back to the same bits.
    #[test]
    fn metrics_read_back_bit_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity { recipe_sha256: "r".into(), teacher_sha256: vec![] };
        let meta = Meta {
            identity: identity.clone(),
            epoch: 3,
            step: 30,
            rng: [1, 2, 3, 4],
            epochs: epochs(),
            best_top1: 0.1 + 0.2,
            best_epoch: 2,
            state_file: "state-3.safetensors".into(),
        };
        save(dir.path(), &meta, &[("w".into(), Tensor::from_slice(&[1.5f32]))], &[]).unwrap();
        let back = load(dir.path(), &identity).unwrap().expect("a checkpoint");
        for (x, y) in meta.epochs.iter().zip(&back.meta.epochs) {
            for (p, q) in [(x.lr, y.lr), (x.train_top1, y.train_top1), (x.test_top1, y.test_top1), (x.seconds, y.seconds)] {
                assert_eq!(p.to_bits(), q.to_bits(), "{p} read back as {q}");
            }
            for ((_, p), (_, q)) in x.losses.iter().zip(&y.losses) {
                assert_eq!(p.to_bits(), q.to_bits(), "{p} read back as {q}");
            }
        }
        assert_eq!(back.meta.best_top1.to_bits(), meta.best_top1.to_bits());
    }
}
