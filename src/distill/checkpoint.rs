//! Checkpoints: after every epoch the student's tensors (parameters and BatchNorm state), the
//! optimizer's momentum buffers, the data generator's state and the metrics so far, and, when
//! the training keeps its best epoch's student (`compress compare`), that student too. The tensors
//! go to a new `state-<epoch>.safetensors`, then `last.json` is replaced atomically to point at
//! it, so a kill at any moment leaves the previous checkpoint intact. `--resume` refuses a
//! checkpoint made with another recipe or other teachers, and one that does not hold together:
//! a state file whose SHA-256 is not the one recorded, a `state_file` that is not a plain
//! `state-<epoch>.safetensors`, an epoch or step outside the training, an all-zero generator.

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
    /// SHA-256 of the state file, checked before it is read.
    #[serde(default)]
    pub state_sha256: String,
}

/// What the training resuming from a checkpoint expects of it.
pub struct Expect {
    pub epochs: usize,
    pub steps_per_epoch: usize,
}

pub struct Checkpoint {
    pub meta: Meta,
    pub model: HashMap<String, Tensor>,
    pub momentum: HashMap<String, Tensor>,
    /// The student's state at the best epoch so far (empty when the training keeps none).
    pub best: HashMap<String, Tensor>,
}

const MODEL: &str = "model/";
const MOMENTUM: &str = "momentum/";
const BEST: &str = "best/";

/// Writes the state file, then `last.json` pointing at it with its hash (`meta.state_sha256` is
/// filled in here).
pub fn save(dir: &Path, meta: &Meta, model: &[(String, Tensor)], momentum: &[(String, Tensor)], best: &[(String, Tensor)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let named: Vec<(String, Tensor)> = [(MODEL, model), (MOMENTUM, momentum), (BEST, best)]
        .iter()
        .flat_map(|(prefix, tensors)| tensors.iter().map(move |(n, t)| (format!("{prefix}{n}"), t.detach().to_device(tch::Device::Cpu).contiguous())))
        .collect();
    let tmp = dir.join(format!(".{}.tmp", meta.state_file));
    let written = Tensor::write_safetensors(&named, &tmp).map_err(anyhow::Error::from).and_then(|()| {
        let state_sha256 = crate::fsio::sha256_hex(&std::fs::read(&tmp)?);
        std::fs::rename(&tmp, dir.join(&meta.state_file))?;
        Ok(state_sha256)
    });
    let state_sha256 = written.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    let meta = Meta { state_sha256, ..meta.clone() };
    crate::fsio::write_atomic(&dir.join("last.json"), serde_json::to_string_pretty(&meta)?.as_bytes())?;
    // Older state files are no longer referenced.
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("state-") && name != meta.state_file {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// The last checkpoint in `dir`, if there is one; refuses one made for another recipe/teachers
/// or one that does not hold together (see the module's header).
pub fn load(dir: &Path, identity: &Identity, expect: &Expect) -> anyhow::Result<Option<Checkpoint>> {
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
    verify(dir, &meta, expect).map_err(|e| bad_input!("cannot resume from {}: {e} (pass --overwrite to start over)", dir.display()))?;
    let (mut model, mut momentum, mut best) = (HashMap::new(), HashMap::new(), HashMap::new());
    for (name, t) in Tensor::read_safetensors(dir.join(&meta.state_file))? {
        if let Some(n) = name.strip_prefix(MODEL) {
            model.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix(MOMENTUM) {
            momentum.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix(BEST) {
            best.insert(n.to_string(), t);
        }
    }
    Ok(Some(Checkpoint { meta, model, momentum, best }))
}

/// Whether `meta` and its state file hold together; the message says what does not.
fn verify(dir: &Path, meta: &Meta, expect: &Expect) -> Result<(), String> {
    let plain = meta
        .state_file
        .strip_prefix("state-")
        .and_then(|r| r.strip_suffix(".safetensors"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !plain {
        return Err(format!("last.json names the state file `{}`, not a plain state-<epoch>.safetensors", meta.state_file.escape_debug()));
    }
    if !(1..=expect.epochs).contains(&meta.epoch) || meta.epochs.len() != meta.epoch {
        return Err(format!("last.json says epoch {} with {} epochs of figures; this training has {} epochs", meta.epoch, meta.epochs.len(), expect.epochs));
    }
    if meta.step != meta.epoch * expect.steps_per_epoch {
        return Err(format!(
            "last.json says step {} after epoch {}, where this training takes {} steps an epoch",
            meta.step, meta.epoch, expect.steps_per_epoch
        ));
    }
    if meta.best_epoch > meta.epoch || !meta.best_top1.is_finite() {
        return Err(format!("last.json says the best epoch was {} (top-1 {})", meta.best_epoch, meta.best_top1));
    }
    if meta.rng == [0; 4] {
        return Err("last.json holds an all-zero generator state, which no run writes".into());
    }
    let path = dir.join(&meta.state_file);
    let meta_ok = std::fs::symlink_metadata(&path).map_err(|e| format!("state file {}: {e}", path.display()))?;
    if !meta_ok.is_file() {
        return Err(format!("state file {} is not a regular file", path.display()));
    }
    let found = crate::fsio::sha256_hex(&std::fs::read(&path).map_err(|e| format!("state file {}: {e}", path.display()))?);
    if found != meta.state_sha256 {
        return Err(format!("state file {} does not have the SHA-256 recorded in last.json (damaged, or written by an older version)", path.display()));
    }
    Ok(())
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
                teacher_weight_peaked: Some(i as f64 / 601.0),
                feature_weights: Some(vec![0.7 / i as f64]),
                feature_weight_top_share: None,
                feature_weight_peaked: None,
                feature_losses: Some(vec![(i as f64).sqrt() / 3.0]),
                method_figures: [("feature_net_meta_grad_norm".to_string(), 1e-7 / i as f64)].into(),
                seconds: i as f64 * 0.731,
                data_wait_seconds: i as f64 * 0.013,
                skipped_images: i % 3,
                host_reads: (i % 2) as u64,
            })
            .collect()
    }

    /// A resumed run must report exactly the figures of an uninterrupted one: every float of a
    /// checkpoint reads back to the same bits.
    #[test]
    fn metrics_read_back_bit_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity { recipe_sha256: "r".into(), teacher_sha256: vec![] };
        let meta = Meta { epoch: 600, step: 6000, epochs: epochs(), best_top1: 0.1 + 0.2, ..meta(&identity) };
        save(dir.path(), &meta, &[("w".into(), Tensor::from_slice(&[1.5f32]))], &[], &[("b".into(), Tensor::from_slice(&[0.5f32]))]).unwrap();
        let back = load(dir.path(), &identity, &Expect { epochs: 600, steps_per_epoch: 10 }).unwrap().expect("a checkpoint");
        for (x, y) in meta.epochs.iter().zip(&back.meta.epochs) {
            for (p, q) in [(x.lr, y.lr), (x.train_top1, y.train_top1), (x.test_top1, y.test_top1), (x.seconds, y.seconds)] {
                assert_eq!(p.to_bits(), q.to_bits(), "{p} read back as {q}");
            }
            for ((_, p), (_, q)) in x.losses.iter().zip(&y.losses) {
                assert_eq!(p.to_bits(), q.to_bits(), "{p} read back as {q}");
            }
        }
        assert_eq!(back.meta.best_top1.to_bits(), meta.best_top1.to_bits());
        assert!(back.best["b"].equal(&Tensor::from_slice(&[0.5f32])), "the best epoch's student travels with the checkpoint");
        assert_eq!((back.model.len(), back.best.len()), (1, 1));
    }

    fn meta(identity: &Identity) -> Meta {
        Meta {
            identity: identity.clone(),
            epoch: 2,
            step: 20,
            rng: [1, 2, 3, 4],
            epochs: epochs().into_iter().take(2).collect(),
            best_top1: 0.5,
            best_epoch: 2,
            state_file: "state-2.safetensors".into(),
            state_sha256: String::new(),
        }
    }

    /// A change to a checkpoint's folder and its `last.json`.
    type Damage = dyn FnOnce(&Path, &mut serde_json::Value);

    /// Saves a good checkpoint, lets `damage` change its folder, and returns what loading says.
    fn load_after(damage: impl FnOnce(&Path, &mut serde_json::Value)) -> anyhow::Result<Option<Checkpoint>> {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity { recipe_sha256: "r".into(), teacher_sha256: vec![] };
        save(dir.path(), &meta(&identity), &[("w".into(), Tensor::from_slice(&[1.5f32, 2.5]))], &[], &[]).unwrap();
        let path = dir.path().join("last.json");
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        damage(dir.path(), &mut json);
        std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        load(dir.path(), &identity, &Expect { epochs: 5, steps_per_epoch: 10 })
    }

    #[test]
    fn a_checkpoint_that_does_not_hold_together_is_refused() {
        assert!(load_after(|_, _| {}).unwrap().is_some(), "the undamaged checkpoint loads");
        let flip = |dir: &Path, _: &mut serde_json::Value| {
            let p = dir.join("state-2.safetensors");
            let mut b = std::fs::read(&p).unwrap();
            let last = b.len() - 1;
            b[last] ^= 1;
            std::fs::write(&p, b).unwrap();
        };
        let cases: Vec<(&str, Box<Damage>)> = vec![
            ("a flipped bit in the state file", Box::new(flip)),
            ("epoch 999", Box::new(|_, j| j["epoch"] = 999.into())),
            ("epoch 0", Box::new(|_, j| j["epoch"] = 0.into())),
            ("a huge step", Box::new(|_, j| j["step"] = u64::MAX.into())),
            ("a path as state file", Box::new(|_, j| j["state_file"] = "../../etc/passwd".into())),
            ("an all-zero generator", Box::new(|_, j| j["rng"] = serde_json::json!([0, 0, 0, 0]))),
            ("no recorded hash", Box::new(|_, j| j["state_sha256"] = "".into())),
        ];
        for (what, damage) in cases {
            let err = load_after(damage).err().unwrap_or_else(|| panic!("{what} was accepted"));
            assert!(crate::error::is_bad_input(&err), "{what}: {err:#}");
            assert!(format!("{err:#}").contains("--overwrite"), "{what}: {err:#}");
        }
    }
}
