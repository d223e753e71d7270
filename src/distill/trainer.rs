//! The one epoch loop: N learners trained in lockstep on seeded batches with augmentation, every
//! teacher run once per batch (no grad) for all of them, per-epoch evaluation, checkpoints after
//! every epoch and resuming from them. A normal run is the one-learner case; `compress compare`
//! the N-learner case. Loss sums stay on the device and are read once per epoch.
//!
//! Data parallel (`inp.dist`): every rank draws the same order and seeds, takes its share of
//! each batch, averages the gradients in each step and its statistics at each epoch's end;
//! rank 0 alone evaluates, prints and writes checkpoints, and a resumed run starts every rank
//! from rank 0's.

use super::checkpoint::{self, Checkpoint, Expect, Identity, Meta};
use super::learner::{teacher_outputs, Learner};
use super::methods::Method;
use super::record::CacheRecord;
use super::record::EpochMetrics;
use super::schedule::lr_at;
use super::teacher_cache::{EpochCache, TeacherCache};
use crate::data::batches::EpochBatches;
use crate::data::feed::{distinct_sizes, Feed, TestSet};
use crate::data::loader::Schedule;
use crate::data::preprocess::Preprocess;
use crate::data::rng::Rng;
use crate::dist::Group;
use crate::graph::Numerics;
use crate::progress::Progress;
use crate::recipe::schema::Train;
use crate::student::Student;
use crate::teacher::Teacher;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;
use tch::Tensor;

/// What every learner of one training shares.
pub struct TrainInputs<'a> {
    pub train: &'a Feed,
    /// The test set at the student's size (first) and every teacher's.
    pub test: &'a TestSet,
    pub preprocess: &'a Preprocess,
    pub teachers: &'a [Teacher],
    pub seed: u64,
    pub label: &'a str,
    /// Where this training's checkpoints go (one folder per training in a run); with several
    /// learners, each gets a subfolder named after its position and label.
    pub checkpoints: Option<PathBuf>,
    /// Continue from the checkpoints in `checkpoints`, if any.
    pub resume: bool,
    pub identity: Identity,
    /// The numerics of the training steps (TF32, autotuning, determinism on CUDA).
    pub numerics: Numerics,
    /// The process group of a data-parallel run.
    pub dist: Option<&'a Group>,
}

impl TrainInputs<'_> {
    /// Whether this process evaluates, prints and writes (the only one, or rank 0).
    pub fn is_main(&self) -> bool {
        self.dist.is_none_or(|g| g.rank == 0)
    }
}

/// One learner's training.
pub struct TrainOutcome {
    /// What the method reports besides the epochs (MGD's self-analyzing accuracies).
    pub method_summary: Option<serde_json::Value>,
    pub epochs: Vec<EpochMetrics>,
    pub best_top1: f64,
    pub best_epoch: usize,
    pub final_top1: f64,
    /// A copy of the student's state at its best epoch, when asked for ([`Lockstep::keep_best`]).
    pub best_state: Option<HashMap<String, Tensor>>,
}

/// The learners of one training and what the loop keeps for each.
pub struct Lockstep<'a> {
    pub learners: Vec<Learner<'a>>,
    /// Keep a copy of each student's state at its best epoch.
    pub keep_best: bool,
}

/// The outcome of a lockstep training: one per learner, in order, and the mean seconds per
/// epoch spent running the teachers (once per batch for all learners).
pub struct Trained {
    pub outcomes: Vec<TrainOutcome>,
    pub teacher_seconds_per_epoch: f64,
    /// What the teacher-output cache did.
    pub teacher_cache: CacheRecord,
}

/// Where the loop stands: the generator, the step count, each learner's history.
struct Progression {
    rng: Rng,
    step: usize,
    /// The step this process started at (0, or where a resumed run continues).
    first_step: usize,
    first_epoch: usize,
    tracks: Vec<TrainOutcome>,
}

/// Trains `lockstep.learners` under `cfg` (a single learner is the plain case).
pub fn train(lockstep: &mut Lockstep, cfg: &Train, inp: &TrainInputs) -> anyhow::Result<Trained> {
    let learners = &mut lockstep.learners;
    // Incomplete last batches are dropped, as in the reference code (methods.md §1.4).
    let steps_per_epoch = inp.train.len() / cfg.batch_size;
    if steps_per_epoch == 0 {
        return Err(crate::bad_input!("train.batch_size {} exceeds the {} training images", cfg.batch_size, inp.train.len()));
    }
    // Only rank 0 reads and writes checkpoints; the others start from its state.
    let dirs = if inp.is_main() { checkpoint_dirs(learners, inp) } else { vec![None; learners.len()] };
    let mut at = resume(learners, &dirs, inp, &Expect { epochs: cfg.epochs, steps_per_epoch })?;
    if let Some(group) = inp.dist {
        share_progression(&mut at, group)?;
    }
    if at.first_epoch == 1 {
        for l in learners.iter() {
            l.prepare(inp.train, inp.test, inp.teachers, cfg.batch_size as i64, inp.seed, inp.dist)?;
        }
    }
    if let Some(group) = inp.dist {
        for l in learners.iter_mut() {
            start_from_root(l, group)?;
        }
    }
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut progress = if inp.is_main() { Progress::new(inp.label, total_steps as u64) } else { Progress::quiet(inp.label, total_steps as u64) };
    progress.inc(at.step as u64, "");
    let mut teacher_seconds = 0.0;
    // The cache is a speed-up: one that cannot be opened leaves the teachers to run, and says why.
    let (mut cache, off) = open_cache(learners, cfg, inp).unwrap_or_else(|e| (None, Some(format!("the cache could not be opened: {e:#}"))));
    for epoch in at.first_epoch..=cfg.epochs {
        let started = Instant::now();
        let fed = run_epoch(learners, cfg, inp, epoch, total_steps, &mut at, &mut progress, &mut teacher_seconds, cache.as_mut())?;
        let single = learners.len() == 1;
        for (k, l) in learners.iter_mut().enumerate() {
            let m = l.finish_epoch(epoch, fed.lr, inp.test.student(), inp.preprocess, inp.dist)?;
            let m = EpochMetrics { data_wait_seconds: fed.waited, skipped_images: fed.skipped, host_reads: fed.host_reads, ..m };
            // With one learner the epoch's wall time is its own; with several, each counts its
            // own steps and evaluation (the teachers' share is reported apart).
            let m = if single { EpochMetrics { seconds: started.elapsed().as_secs_f64(), ..m } } else { m };
            if inp.is_main() {
                progress.println(&m.line(&l.label, cfg.epochs));
            }
            record_epoch(&mut at.tracks[k], l.student, m, lockstep.keep_best);
            if let Some(group) = inp.dist {
                if !group.agree_with_root(&l.opt.flat_params())? {
                    anyhow::bail!(
                        "{}: after epoch {epoch} the {} ranks hold different parameters (checked against rank 0's; a nondeterministic kernel, or ranks that ran other code)",
                        l.label,
                        group.world_size
                    );
                }
            }
        }
        for (k, dir) in dirs.iter().enumerate() {
            if let Some(dir) = dir {
                save(dir, &learners[k], &at, k, epoch, inp.identity.clone())?;
            }
        }
    }
    progress.finish();
    let epochs_run = (cfg.epochs + 1 - at.first_epoch.min(cfg.epochs + 1)).max(1);
    for (t, l) in at.tracks.iter_mut().zip(learners.iter()) {
        t.final_top1 = t.epochs.last().map_or(0.0, |e| e.test_top1);
        t.method_summary = l.method.summary();
    }
    let teacher_cache = match cache {
        Some(c) => c.record,
        None => CacheRecord { off, ..Default::default() },
    };
    if teacher_cache.hits > 0 && inp.is_main() {
        eprintln!("{}: teacher outputs of {} epoch(s) read from the cache ({:.1} MB)", inp.label, teacher_cache.hits, teacher_cache.bytes_read as f64 / 1e6);
    }
    Ok(Trained { outcomes: at.tracks, teacher_seconds_per_epoch: teacher_seconds / epochs_run as f64, teacher_cache })
}

/// The teachers any learner uses (indices into all teachers), in increasing order.
fn teachers_used(learners: &[Learner]) -> Vec<usize> {
    let mut union: Vec<usize> = learners.iter().flat_map(|l| l.teachers.iter().copied()).collect();
    union.sort_unstable();
    union.dedup();
    union
}

/// The teacher-output cache of this training, or why there is none.
fn open_cache(learners: &[Learner], cfg: &Train, inp: &TrainInputs) -> anyhow::Result<(Option<TeacherCache>, Option<String>)> {
    let union = teachers_used(learners);
    let dir = crate::data::cache::default_dir();
    let needs_taps = learners.iter().any(|l| l.needs_teacher_taps());
    if let Some(off) = super::teacher_cache::why_off(cfg.teacher_cache.enabled, &union, needs_taps, dir.as_deref()) {
        return Ok((None, Some(off)));
    }
    let dir = dir.expect("why_off checks the folder");
    let used: Vec<&Teacher> = union.iter().map(|&i| &inp.teachers[i]).collect();
    let sizes = epoch_sizes(inp, &union);
    let device = learners[0].student.device();
    // On CUDA the teachers' logits depend on TF32 and cuDNN's algorithm choice; not on the CPU.
    let n = inp.numerics;
    let how = if device.is_cuda() { format!("tf32={} deterministic={}", n.allow_tf32, n.deterministic) } else { String::new() };
    let cache = TeacherCache::new(&dir, &used, &inp.train.source, &inp.train.train, &sizes, device, &how, cfg.teacher_cache.top_k)?;
    Ok((Some(cache), None))
}

/// The sizes every batch is rendered at: the student's, then each used teacher's.
fn epoch_sizes(inp: &TrainInputs, union: &[usize]) -> Vec<(i64, i64)> {
    distinct_sizes(inp.test.sizes[0], union.iter().map(|&i| inp.teachers[i].input_hw))
}

/// What one epoch of steps reports besides the learners' own figures.
struct Fed {
    /// The last step's learning rate.
    lr: f64,
    /// Seconds the steps waited for batches.
    waited: f64,
    /// Training images left out because they failed to decode.
    skipped: usize,
    /// Host reads the steps made ([`crate::host`]), the run's first step excepted.
    host_reads: u64,
}

/// One epoch of steps for every learner.
#[allow(clippy::too_many_arguments)]
fn run_epoch(
    learners: &mut [Learner],
    cfg: &Train,
    inp: &TrainInputs,
    epoch: usize,
    total_steps: usize,
    at: &mut Progression,
    progress: &mut Progress,
    teacher_seconds: &mut f64,
    cache: Option<&mut TeacherCache>,
) -> anyhow::Result<Fed> {
    let sgd = &cfg.optimizer.sgd;
    let device = learners[0].student.device();
    let union = teachers_used(learners);
    // The order and every batch's augmentation seed are drawn before the first step, so the
    // generator's state at the epoch's end does not depend on how the batches are loaded.
    let mut order = EpochBatches::new(inp.train.len(), cfg.batch_size, true, true, &mut at.rng);
    let mut batches = Vec::with_capacity(order.num_batches());
    while let Some(idx) = order.next_indices() {
        batches.push(idx.iter().map(|&i| i as usize).collect::<Vec<_>>());
    }
    let seeds = batches.iter().map(|_| at.rng.next_u64()).collect();
    let schedule = Schedule { batches, seeds };
    let schedule = match inp.dist {
        Some(group) => schedule.shard(group.rank, group.world_size)?,
        None => schedule,
    };
    let steps = schedule.batches.len();
    let mut entry = match cache {
        Some(ref c) => c.epoch(&schedule, union.len()).map_err(|e| eprintln!("warning: teacher cache: {e:#}; this epoch runs its teachers")).ok(),
        None => None,
    };
    let hit = matches!(entry, Some(EpochCache::Hit(_)));
    // With the teachers' outputs read, only the student's view is needed; except where a file
    // is decoded at a reduction chosen for the largest size, which the student's view follows.
    let follows_largest = matches!(&inp.train.source, crate::data::loader::Source::Files(list) if list.reduced_decode);
    let sizes = if hit && !follows_largest { vec![inp.test.sizes[0]] } else { epoch_sizes(inp, &union) };
    let mut lr = sgd.lr;
    // The student's input transform, its constants built once on the device.
    let student_input = inp.preprocess.on(device)?;
    let mut host_reads = 0;
    let sync_debug = if device.is_cuda() { crate::device::sync_debug_requested()? } else { None };
    let (waited, skipped) = inp.train.train_batches(&schedule, &sizes, |stream| {
        let _numerics = inp.numerics.enter();
        let mut _sync_debug = None;
        let mut skipped = 0;
        for i in 0..steps {
            if let Some(mode) = sync_debug.filter(|_| at.step > at.first_step && _sync_debug.is_none()) {
                _sync_debug = Some(SyncDebugScope::enter(mode)?);
            }
            let batch = stream.next().ok_or_else(|| anyhow::anyhow!("the loader ended before batch {i} of {steps}"))??;
            skipped += batch.skipped.len();
            lr = lr_at(&cfg.schedule, sgd.lr, epoch, at.step, total_steps);
            let rows = batch.labels.size()[0] as usize;
            if rows == 0 {
                // Every image of this batch was left out as bad: the step is skipped, the
                // schedule moves on as if it had run.
                if let Some(EpochCache::Miss(w)) = entry.as_mut() {
                    w.skip();
                }
                if let Some(group) = inp.dist {
                    for l in learners.iter_mut() {
                        l.idle_step(lr, group)?;
                    }
                }
                at.step += 1;
                progress.inc(1, &format!("epoch {epoch}/{}", cfg.epochs));
                continue;
            }
            let reads_before = crate::host::reads();
            let labels = crate::host::upload(&batch.labels, device)?;
            // Each view goes to the device once, as uint8, for every model that takes it.
            let views = batch.views.iter().map(|v| crate::host::upload(v, device)).collect::<Result<Vec<_>, _>>()?;
            let started = Instant::now();
            let outputs = match entry.as_mut() {
                Some(EpochCache::Hit(r)) => r.outputs(i, rows, &union, inp.teachers.len(), device)?,
                Some(EpochCache::Miss(w)) => w.push(&teacher_outputs(inp.teachers, &union, &views, &sizes, device)?, &union, rows)?,
                None => teacher_outputs(inp.teachers, &union, &views, &sizes, device)?,
            };
            *teacher_seconds += started.elapsed().as_secs_f64();
            let x = student_input.apply(&views[0])?;
            for l in learners.iter_mut() {
                l.step(&x, &labels, &outputs, epoch, i, steps, lr, inp.seed, inp.dist)?;
            }
            // The run's first step may set things up once (lazily built state, shapes).
            if at.step > at.first_step {
                host_reads += crate::host::reads() - reads_before;
            }
            at.step += 1;
            progress.inc(1, &format!("epoch {epoch}/{}", cfg.epochs));
        }
        Ok((stream.waited().as_secs_f64(), skipped))
    })?;
    if let Some(c) = cache {
        match entry {
            Some(EpochCache::Hit(r)) => {
                c.record.hits += 1;
                c.record.bytes_read += r.bytes();
            }
            Some(EpochCache::Miss(w)) => match w.finish() {
                Ok(bytes) => {
                    c.record.misses += 1;
                    c.record.bytes_written += bytes;
                }
                Err(e) => eprintln!("warning: teacher cache: {e:#}; the epoch's outputs are not kept"),
            },
            None => {}
        }
    }
    Ok(Fed { lr, waited, skipped, host_reads })
}

/// libtorch's CUDA sync-debug mode for the steps of an epoch after the run's first; off again
/// when the steps end (or fail), before the epoch's figures are read.
struct SyncDebugScope;

impl SyncDebugScope {
    fn enter(mode: crate::device::SyncDebug) -> anyhow::Result<SyncDebugScope> {
        crate::device::set_sync_debug(mode)?;
        Ok(SyncDebugScope)
    }
}

impl Drop for SyncDebugScope {
    fn drop(&mut self) {
        let _ = crate::device::set_sync_debug(crate::device::SyncDebug::Off);
    }
}

/// Gives every rank rank 0's place in the training (a resumed run's epoch, step and generator).
fn share_progression(at: &mut Progression, group: &Group) -> anyhow::Result<()> {
    let mut values = vec![at.first_epoch as i64, at.step as i64];
    values.extend(at.rng.state().iter().map(|&w| w as i64));
    let shared = Tensor::from_slice(&values);
    group.broadcast(&shared, 0)?;
    let got = crate::host::vec::<i64>(&shared)?;
    let rng = [got[2] as u64, got[3] as u64, got[4] as u64, got[5] as u64];
    (at.first_epoch, at.step, at.first_step, at.rng) = (got[0] as usize, got[1] as usize, got[1] as usize, Rng::from_state(rng));
    Ok(())
}

/// Starts a learner from rank 0's state, as PyTorch's DDP does when it wraps a model: its
/// parameters and momentum, the student's statistics and the method's state (identical from the
/// seed on a fresh start, rank 0's checkpoint on a resumed one).
fn start_from_root(learner: &mut Learner, group: &Group) -> anyhow::Result<()> {
    let _guard = tch::no_grad_guard();
    learner.opt.broadcast_state(group, 0)?;
    let params: std::collections::HashSet<String> = learner.opt.names().into_iter().collect();
    for (name, t) in model_state(learner.student, learner.method) {
        if params.contains(&name) {
            continue;
        }
        if t.is_contiguous() {
            group.broadcast(&t, 0)?;
        } else {
            let dense = t.contiguous();
            group.broadcast(&dense, 0)?;
            t.shallow_clone().f_copy_(&dense)?;
        }
    }
    Ok(())
}

/// Appends an epoch to a learner's history and keeps its best.
fn record_epoch(track: &mut TrainOutcome, student: &Student, m: EpochMetrics, keep_best: bool) {
    if m.test_top1 > track.best_top1 {
        track.best_top1 = m.test_top1;
        track.best_epoch = m.epoch;
        if keep_best {
            track.best_state = Some(student.state().into_iter().map(|(n, t)| (n, t.detach().copy())).collect());
        }
    }
    track.epochs.push(m);
}

/// Each learner's checkpoint folder: the training's own for one learner, a subfolder per label
/// for several.
fn checkpoint_dirs(learners: &[Learner], inp: &TrainInputs) -> Vec<Option<PathBuf>> {
    let name = |k: usize, label: &str| {
        let safe: String = label.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        format!("{k:02}-{safe}")
    };
    learners
        .iter()
        .enumerate()
        .map(|(k, l)| inp.checkpoints.as_ref().map(|d| if learners.len() == 1 { d.clone() } else { d.join(name(k, &l.label)) }))
        .collect()
}

/// A fresh start, or (with `inp.resume`) every learner restored from its checkpoint; all of
/// them must stand at the same epoch, step and generator state.
fn resume(learners: &mut [Learner], dirs: &[Option<PathBuf>], inp: &TrainInputs, expect: &Expect) -> anyhow::Result<Progression> {
    let fresh = || TrainOutcome { method_summary: None, epochs: vec![], best_top1: -1.0, best_epoch: 0, final_top1: 0.0, best_state: None };
    let mut at = Progression { rng: Rng::new(inp.seed), step: 0, first_step: 0, first_epoch: 1, tracks: learners.iter().map(|_| fresh()).collect() };
    if !inp.resume {
        return Ok(at);
    }
    let mut found: Option<(usize, usize, [u64; 4])> = None;
    let mut missing = Vec::new();
    for (k, dir) in dirs.iter().enumerate() {
        let Some(dir) = dir else { continue };
        let Some(ck) = checkpoint::load(dir, &inp.identity, expect)? else {
            missing.push(dir.display().to_string());
            continue;
        };
        let here = (ck.meta.epoch, ck.meta.step, ck.meta.rng);
        if found.is_some_and(|f| f != here) {
            return Err(crate::bad_input!("cannot resume: the checkpoints under {} stand at different epochs", dir.display()));
        }
        found = Some(here);
        restore(&mut learners[k], &ck)?;
        let best_state = (!ck.best.is_empty()).then_some(ck.best);
        at.tracks[k] = TrainOutcome { epochs: ck.meta.epochs, best_top1: ck.meta.best_top1, best_epoch: ck.meta.best_epoch, best_state, ..fresh() };
        eprintln!("{}: resuming after epoch {} from {}", learners[k].label, ck.meta.epoch, dir.display());
    }
    if let Some((epoch, step, rng)) = found {
        if !missing.is_empty() {
            return Err(crate::bad_input!("cannot resume: {} hold(s) no checkpoint while the other learners stand after epoch {epoch}", missing.join(", ")));
        }
        (at.rng, at.step, at.first_step, at.first_epoch) = (Rng::from_state(rng), step, step, epoch + 1);
    }
    Ok(at)
}

/// Writes learner `k`'s checkpoint after `epoch`.
fn save(dir: &std::path::Path, learner: &Learner, at: &Progression, k: usize, epoch: usize, identity: Identity) -> anyhow::Result<()> {
    let track = &at.tracks[k];
    let meta = Meta {
        identity,
        epoch,
        step: at.step,
        rng: at.rng.state(),
        epochs: track.epochs.clone(),
        best_top1: track.best_top1,
        best_epoch: track.best_epoch,
        state_file: format!("state-{epoch}.safetensors"),
        state_sha256: String::new(),
    };
    let mut best: Vec<(String, Tensor)> = track.best_state.iter().flatten().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    best.sort_by(|a, b| a.0.cmp(&b.0));
    checkpoint::save(dir, &meta, &model_state(learner.student, learner.method), &learner.opt.buffers(), &best)
}

/// Copies a checkpoint into the learner's student, method and optimizer.
fn restore(learner: &mut Learner, ck: &Checkpoint) -> anyhow::Result<()> {
    learner.student.load_state(&ck.model)?;
    load_method_state(learner.method, &ck.model)?;
    learner.opt.load_buffers(&ck.momentum)?;
    Ok(())
}

/// Everything a checkpoint holds of the model: the student's initializers and the method's
/// module variables (with BatchNorm statistics) under `method.`.
fn model_state(student: &Student, method: &dyn Method) -> Vec<(String, Tensor)> {
    let mut state = student.state();
    if let Some(vs) = method.modules() {
        let mut extra: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (format!("method.{n}"), t)).collect();
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        state.extend(extra);
    }
    state.extend(method.state().into_iter().map(|(n, t)| (format!("method_state.{n}"), t)));
    state
}

fn load_method_state(method: &dyn Method, saved: &HashMap<String, Tensor>) -> anyhow::Result<()> {
    let _guard = tch::no_grad_guard();
    let modules = method.modules().map(|vs| vs.variables().into_iter().map(|(n, t)| (format!("method.{n}"), t)).collect::<Vec<_>>()).unwrap_or_default();
    let state = method.state().into_iter().map(|(n, t)| (format!("method_state.{n}"), t));
    for (name, mut t) in modules.into_iter().chain(state) {
        let src = saved.get(&name).ok_or_else(|| anyhow::anyhow!("the checkpoint has no `{name}`"))?;
        t.f_copy_(src)?;
    }
    Ok(())
}
