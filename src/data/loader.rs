//! Batches rendered by worker threads ahead of the training step: each worker decodes and
//! transforms whole batches into a bounded queue, so memory is bounded by the queue, not by the
//! data set, and the step only waits when decoding falls behind (the wait is measured).
//!
//! Every sample's random view comes from its own generator, seeded by its batch's seed and its
//! position in the batch, so the batches are the same whatever the number of workers.

use super::disk_cache::DiskSet;
use super::files::FileList;
use super::rng::Rng;
use super::transform::{geometry, EvalTransform, TrainTransform, View};
use super::ImageSet;
use anyhow::{Context, Result};
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// Where the images of a set come from.
pub enum Source {
    /// Decoded already, all one size: CIFAR-scale sets.
    Memory(ImageSet),
    /// Files decoded when a batch needs them.
    Files(FileList),
    /// Files decoded once into the disk cache, read back when a batch needs them.
    Disk(DiskSet, FileList),
}

impl Source {
    pub fn len(&self) -> usize {
        match self {
            Source::Memory(s) => s.len(),
            Source::Files(f) | Source::Disk(_, f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn class_names(&self) -> &[String] {
        match self {
            Source::Memory(s) => &s.class_names,
            Source::Files(f) | Source::Disk(_, f) => &f.class_names,
        }
    }

    /// A seeded random subset of `n` samples ([`super::seeded_subset`]), kept in order.
    pub fn take_seeded(self, n: usize, seed: u64) -> Result<Source> {
        if n >= self.len() {
            return Ok(self);
        }
        let idx = super::seeded_subset(self.len(), n, seed);
        Ok(match self {
            Source::Memory(s) => Source::Memory(s.take_seeded(n, seed)),
            Source::Files(f) => Source::Files(f.subset(&idx)),
            Source::Disk(d, f) => Source::Disk(d.subset(&idx)?, f.subset(&idx)),
        })
    }

    /// Every sample's label, in order.
    pub fn labels(&self) -> Result<Vec<i64>> {
        match self {
            Source::Memory(s) => crate::host::vec::<i64>(&s.labels).context("reading labels"),
            Source::Files(f) | Source::Disk(_, f) => Ok(f.labels.clone()),
        }
    }
}

/// How samples become model inputs.
#[derive(Clone, Debug)]
pub enum Render {
    /// Random views (each sample drawn from its own seeded generator).
    Train(TrainTransform),
    /// The deterministic evaluation view.
    Eval(EvalTransform),
}

/// What to load: the batches as sample indices, and for training one seed per batch.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    pub batches: Vec<Vec<usize>>,
    /// One per batch (ignored by [`Render::Eval`]).
    pub seeds: Vec<u64>,
}

impl Schedule {
    /// Rank `rank`'s share of every batch in a data-parallel run of `world_size` processes:
    /// its contiguous slice of the batch's samples, with the seed moved by the slice's start, so
    /// each sample gets the view it gets in the whole batch (a sample's generator is seeded by
    /// the batch's seed plus its position). The batch size must divide evenly.
    pub fn shard(&self, rank: usize, world_size: usize) -> Result<Schedule> {
        anyhow::ensure!(rank < world_size, "rank {rank} of {world_size}");
        let mut out = Schedule { batches: Vec::with_capacity(self.batches.len()), seeds: Vec::with_capacity(self.seeds.len()) };
        for (k, batch) in self.batches.iter().enumerate() {
            anyhow::ensure!(batch.len() % world_size == 0, "a batch of {} samples does not split evenly over {world_size} processes", batch.len());
            let per = batch.len() / world_size;
            let start = rank * per;
            out.batches.push(batch[start..start + per].to_vec());
            if let Some(seed) = self.seeds.get(k) {
                out.seeds.push(seed.wrapping_add(start as u64));
            }
        }
        Ok(out)
    }
}

/// How many workers render, and how many finished batches each may hold ahead of the step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workers {
    /// 0 renders in the calling thread, when the step asks for the batch.
    pub threads: usize,
    /// Finished batches a worker may queue (at least 1).
    pub ahead: usize,
}

/// One rendered batch.
pub struct Batch {
    /// One `[b, h, w, 3]` uint8 CPU tensor per requested size, in the order of the sizes.
    pub views: Vec<Tensor>,
    /// `[b]` int64 CPU.
    pub labels: Tensor,
    /// Files of this batch that failed to decode and were left out (`skip_bad`).
    pub skipped: Vec<String>,
}

/// The batches of a [`Schedule`], in order. The wait for each is added to [`Stream::waited`].
pub struct Stream<'a> {
    inline: Option<Renderer<'a>>,
    /// Batch `k` made by the caller (cut on the device from a resident set) instead of rendered.
    cut: Option<&'a dyn Fn(usize) -> Result<Batch>>,
    queues: Vec<Receiver<Result<Batch>>>,
    next: usize,
    total: usize,
    waited: Duration,
}

impl Stream<'_> {
    /// Time the consumer spent waiting for batches so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Iterator for Stream<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.total {
            return None;
        }
        let k = self.next;
        self.next += 1;
        let started = Instant::now();
        let batch = match (&self.inline, self.cut) {
            (_, Some(cut)) => cut(k),
            (Some(r), None) => r.batch(k),
            (None, None) => {
                let q = &self.queues[k % self.queues.len()];
                q.recv().unwrap_or_else(|_| Err(anyhow::anyhow!("image loading worker stopped before batch {k}")))
            }
        };
        self.waited += started.elapsed();
        Some(batch)
    }
}

/// Sample pixels as the workers see them: plain slices, shareable between threads.
#[derive(Clone, Copy)]
enum Pixels<'a> {
    Memory { bytes: &'a [u8], h: i64, w: i64 },
    Files(&'a FileList),
    Disk(&'a DiskSet),
}

/// Everything a worker needs to render any batch of the schedule.
#[derive(Clone, Copy)]
struct Renderer<'a> {
    pixels: Pixels<'a>,
    labels: &'a [i64],
    schedule: &'a Schedule,
    render: &'a Render,
    sizes: &'a [(i64, i64)],
    skip_bad: bool,
}

impl Renderer<'_> {
    /// Batch `k` of the schedule.
    fn batch(&self, k: usize) -> Result<Batch> {
        let indices = &self.schedule.batches[k];
        let mut bufs: Vec<Vec<u8>> = self.sizes.iter().map(|(h, w)| vec![0u8; indices.len() * (h * w * 3) as usize]).collect();
        let mut labels = Vec::with_capacity(indices.len());
        let mut skipped = Vec::new();
        let seed = self.schedule.seeds.get(k).copied().unwrap_or(0);
        for (j, &i) in indices.iter().enumerate() {
            // Slot `labels.len()`: samples left out close the gap, so a batch stays dense.
            let slot = labels.len();
            let mut outs: Vec<&mut [u8]> =
                bufs.iter_mut().zip(self.sizes).map(|(b, (h, w))| &mut b[slot * (h * w * 3) as usize..(slot + 1) * (h * w * 3) as usize]).collect();
            match self.sample(i, seed.wrapping_add(j as u64), &mut outs) {
                Ok(()) => labels.push(self.labels[i]),
                Err(e) if self.skip_bad && crate::error::is_bad_input(&e) => skipped.push(format!("{e:#}")),
                Err(e) => return Err(e),
            }
        }
        let b = labels.len() as i64;
        let views = bufs
            .iter()
            .zip(self.sizes)
            .map(|(buf, &(h, w))| Tensor::f_from_data_size(&buf[..(b * h * w * 3) as usize], &[b, h, w, 3], Kind::Uint8))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Batch { views, labels: Tensor::from_slice(&labels), skipped })
    }

    /// Renders sample `i` at every size into `outs`.
    fn sample(&self, i: usize, seed: u64, outs: &mut [&mut [u8]]) -> Result<()> {
        let (owned, hw) = match self.pixels {
            Pixels::Memory { bytes, h, w } => {
                let per = (h * w * 3) as usize;
                return self.render_decoded(&bytes[i * per..(i + 1) * per], (h, w), seed, outs);
            }
            Pixels::Files(list) if list.reduced_decode => return self.render_file_reduced(list, i, seed, outs),
            Pixels::Files(list) => {
                let img = super::decode::decode_file(&list.files[i], list.max_pixels)?;
                let hw = (img.height() as i64, img.width() as i64);
                (img.into_raw(), hw)
            }
            Pixels::Disk(set) => {
                let (px, hw) = set.read(i)?;
                (px, hw)
            }
        };
        self.render_decoded(&owned, hw, seed, outs)
    }

    /// Renders a decoded `h × w` image at every size.
    fn render_decoded(&self, src: &[u8], hw: (i64, i64), seed: u64, outs: &mut [&mut [u8]]) -> Result<()> {
        match self.render {
            Render::Train(t) => {
                let view = t.draw(hw.0, hw.1, &mut Rng::new(seed));
                for (size, out) in self.sizes.iter().zip(outs.iter_mut()) {
                    t.render(src, hw, view, *size, out)?;
                }
                Ok(())
            }
            Render::Eval(t) => t.render(src, hw, self.sizes, outs),
        }
    }

    /// Renders file `i` decoded no larger than its view needs: the view is drawn on the size
    /// the scan read from the header (the same draws as a full decode), then the file is
    /// decoded at the largest JPEG reduction that keeps the view at least the largest model
    /// size, and the view is cut from that.
    fn render_file_reduced(&self, list: &FileList, i: usize, seed: u64, outs: &mut [&mut [u8]]) -> Result<()> {
        let path = &list.files[i];
        let full = (list.sizes[i].0 as i64, list.sizes[i].1 as i64);
        let (view, d) = match self.render {
            Render::Train(t) => {
                let view = t.draw(full.0, full.1, &mut Rng::new(seed));
                (Some(view), t.reduction(full, view, self.sizes))
            }
            Render::Eval(t) => (None, t.reduction(full, self.sizes)),
        };
        let img = super::decode::decode_reduced(&super::decode::read_file(path)?, path, list.max_pixels, d as u32)?;
        let hw = (img.height() as i64, img.width() as i64);
        let reduced = geometry::reduced_size(full.0, full.1, d);
        if hw != full && hw != reduced {
            return Err(crate::bad_input!(
                "image {} is now {}x{} pixels; the scan before training read {}x{}: the folder changed during the run",
                path.display(),
                hw.1,
                hw.0,
                full.1,
                full.0
            ));
        }
        // The decoder may give the full size where the file does not allow a reduction.
        let d = if hw == full { 1 } else { d };
        let src = img.into_raw();
        match (self.render, view) {
            (Render::Train(t), Some(view)) => {
                let view = View { crop: if d == 1 { view.crop } else { view.crop.reduced(d, full) }, ..view };
                for (size, out) in self.sizes.iter().zip(outs.iter_mut()) {
                    t.render(&src, hw, view, *size, out)?;
                }
                Ok(())
            }
            (Render::Eval(t), _) => t.render_reduced(&src, hw, full, self.sizes, outs),
            (Render::Train(_), None) => unreachable!("a training view is drawn above"),
        }
    }
}

/// Runs `consume` over `total` batches made by `cut` in the calling thread (a resident set's
/// batches, cut on the device in a few kernels: there is nothing to overlap).
pub fn stream_cut<R>(total: usize, cut: &dyn Fn(usize) -> Result<Batch>, consume: impl FnOnce(&mut Stream) -> Result<R>) -> Result<R> {
    let mut s = Stream { inline: None, cut: Some(cut), queues: vec![], next: 0, total, waited: Duration::ZERO };
    consume(&mut s)
}

/// Makes libtorch's kernels run on the calling thread alone (OpenMP teams of one): a worker
/// resizes one small image at a time, and a team per worker would fight the training step
/// and the other workers for the cores (measured: a 224-pixel resized crop took 2 ms with the
/// default team of two on a busy 2-core machine, 0.5 ms alone). Only this thread's OpenMP
/// setting changes; libtorch's own thread count, used by the training thread, stays.
fn one_kernel_thread() {
    // libtorch sets each thread's OpenMP team size the first time the thread asks for it; ask
    // first, so that setting is the one replaced below.
    let _ = tch::get_num_threads();
    // SAFETY: dlsym with RTLD_DEFAULT (a null handle on glibc) only looks the name up among the
    // loaded libraries; the symbol, when present, is OpenMP's `void omp_set_num_threads(int)`.
    unsafe {
        let name = c"omp_set_num_threads";
        let f = libc::dlsym(std::ptr::null_mut(), name.as_ptr());
        if !f.is_null() {
            let set: extern "C" fn(libc::c_int) = std::mem::transmute(f);
            set(1);
        }
    }
}

/// Runs `consume` over the batches of `schedule` from `source`, rendered by `render` at each of
/// `sizes`, by `workers` threads running ahead of it. The workers stop when `consume` returns.
pub fn stream<R>(
    source: &Source,
    schedule: &Schedule,
    render: &Render,
    sizes: &[(i64, i64)],
    workers: Workers,
    skip_bad: bool,
    consume: impl FnOnce(&mut Stream) -> Result<R>,
) -> Result<R> {
    anyhow::ensure!(!sizes.is_empty(), "no size to render");
    anyhow::ensure!(matches!(render, Render::Eval(_)) || schedule.seeds.len() == schedule.batches.len(), "a training schedule needs one seed per batch");
    let labels = source.labels()?;
    let pixels = match source {
        Source::Memory(set) => {
            let (h, w) = set.image_size();
            Pixels::Memory { bytes: set.pixels(), h, w }
        }
        Source::Files(list) => Pixels::Files(list),
        Source::Disk(set, _) => Pixels::Disk(set),
    };
    let renderer = Renderer { pixels, labels: &labels, schedule, render, sizes, skip_bad };
    let total = schedule.batches.len();
    if workers.threads == 0 || total == 0 {
        let mut s = Stream { inline: Some(renderer), cut: None, queues: vec![], next: 0, total, waited: Duration::ZERO };
        return consume(&mut s);
    }
    let threads = workers.threads.min(total);
    std::thread::scope(|scope| {
        let mut queues = Vec::with_capacity(threads);
        for t in 0..threads {
            let (tx, rx) = sync_channel::<Result<Batch>>(workers.ahead.max(1));
            queues.push(rx);
            scope.spawn(move || {
                one_kernel_thread();
                // Worker t renders batches t, t + threads, …; the consumer reads the queues in
                // turn, so batches arrive in order without a reordering buffer.
                for k in (t..total).step_by(threads) {
                    let batch = renderer.batch(k);
                    let failed = batch.is_err();
                    // A closed queue means the consumer is done (or failed): stop quietly.
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            });
        }
        let mut s = Stream { inline: None, cut: None, queues, next: 0, total, waited: Duration::ZERO };
        let result = consume(&mut s);
        // Dropping the queues makes every blocked worker's send fail, so the scope can join.
        drop(s);
        result
    })
}

#[cfg(test)]
#[path = "loader_tests.rs"]
mod tests;
