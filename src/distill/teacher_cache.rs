//! `train.teacher_cache`: the teachers' logits on every batch of an epoch, written once to a file
//! in the cache folder and memory-mapped by later trainings that would compute the same thing:
//! the QAT stage after the float stage, a re-run, the other methods and seeds of a sweep.
//!
//! An entry is one epoch. Its key hashes everything the logits depend on: each teacher (file,
//! preprocessing, precision, output kind, input size, how its graph runs), the training images
//! and labels, the training transform, the rendered sizes, the device, the compression, and the
//! epoch's schedule itself (every batch's samples and augmentation seed), so another seed, batch
//! size or epoch is simply another key.
//!
//! With many classes only each image's `k` largest logits are kept, with one value standing for
//! all the others: the log of their mean exponential, so the softmax at temperature 1 keeps its
//! total mass (the compressed soft labels of Shen & Xing, "A Fast Knowledge Distillation
//! Framework for Visual Recognition"). The training that writes an entry learns from exactly
//! what it wrote, so a run that reads it gives the same result bit for bit.
//!
//! Layout, little endian: header (magic, version, key, teachers, classes, k, steps), the steps'
//! records, each step's row count, a checksum of records and counts. A record holds, per
//! teacher, `rows × classes` f32 logits; or `rows × k` f32 values, `rows × k` i32 classes and
//! `rows` f32 rest values. Written under a temporary name and renamed; an entry that fails a
//! check is a miss and is written again.

use super::learner::TeacherOutputs;
use super::record::CacheRecord;
use crate::data::loader::{Schedule, Source};
use crate::data::transform::TrainTransform;
use crate::teacher::Teacher;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

const MAGIC: &[u8; 8] = b"CMPTOUT\0";
/// In every key, so logits computed another way are never read: 2 since bf16 and fp16 teachers
/// run their classifier head in fp32, 3 since they keep normalization parameters in fp32.
const VERSION: u32 = 3;
/// Magic, version, key, teachers, classes, k, steps.
const HEADER: usize = 8 + 4 + 32 + 8 * 4;
/// Classes up to which every logit is kept by default.
pub const FULL_UP_TO_CLASSES: usize = 100;
/// Logits kept per image by default above [`FULL_UP_TO_CLASSES`].
pub const DEFAULT_TOP_K: usize = 10;
/// Pending records beyond this many bytes are written out during the epoch.
const FLUSH_BYTES: u64 = 256 << 20;

/// The cache for one training: where entries go and the part of the key shared by its epochs.
pub struct TeacherCache {
    dir: PathBuf,
    base: Sha256,
    classes: usize,
    /// 0: every logit.
    k: usize,
    pub record: CacheRecord,
}

/// Whichever of a hit or a miss an epoch is.
pub enum EpochCache {
    Hit(Reader),
    Miss(Writer),
}

/// A memory-mapped file, read-only.
struct Mmap {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and private, owned by this value until it is dropped.
unsafe impl Send for Mmap {}
unsafe impl Sync for Mmap {}

impl Mmap {
    fn open(path: &Path) -> Result<Mmap> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            bail!("{} is empty", path.display());
        }
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh read-only private mapping of a regular file we opened; the pointer is
        // checked for MAP_FAILED and unmapped once in Drop. The file descriptor may close after.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            bail!("mapping {}: {}", path.display(), std::io::Error::last_os_error());
        }
        Ok(Mmap { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// The stored form's byte sizes for `rows` images of one teacher.
fn teacher_bytes(rows: usize, classes: usize, k: usize) -> usize {
    if k == 0 {
        rows * classes * 4
    } else {
        rows * (k * 8 + 4)
    }
}

/// An epoch read from its entry.
pub struct Reader {
    map: Mmap,
    teachers: usize,
    classes: usize,
    k: usize,
    /// Each step's byte offset and rows.
    steps: Vec<(usize, usize)>,
}

/// An epoch being computed: its records, pending on the device until they are written.
pub struct Writer {
    path: PathBuf,
    tmp: PathBuf,
    /// None once finished; an unfinished entry's temporary is removed when the writer drops.
    file: Option<std::io::BufWriter<std::fs::File>>,
    teachers: usize,
    classes: usize,
    k: usize,
    rows: Vec<u32>,
    pending: Vec<Tensor>,
    pending_bytes: u64,
    checksum: Checksum,
    written: u64,
    /// Why the entry cannot be completed (a write failed): the epoch goes on without it.
    failed: Option<String>,
}

/// FNV-1a, 64-bit, over the records and row counts: catches truncation and bit rot.
struct Checksum(u64);

impl Checksum {
    fn new() -> Checksum {
        Checksum(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        // Eight bytes at a time: the records run to hundreds of MB.
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.0 = (self.0 ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(0x0000_0100_0000_01b3);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Why no training of `teachers_used` with these learners' needs can use the cache, or None.
pub fn why_off(enabled: bool, teachers_used: &[usize], needs_taps: bool, dir: Option<&Path>) -> Option<String> {
    if !enabled {
        return Some("train.teacher_cache.enabled is false".into());
    }
    if teachers_used.is_empty() {
        return Some("the method uses no teacher".into());
    }
    if needs_taps {
        return Some("the method learns from teacher features, which are not cached (logits only)".into());
    }
    if dir.is_none() {
        return Some("no cache folder (set COMPRESS_CACHE_DIR; neither HOME nor XDG_CACHE_HOME is set)".into());
    }
    None
}

/// The logits kept per image for `classes` classes under `top_k` (0: every logit).
pub fn kept(top_k: Option<usize>, classes: usize) -> usize {
    match top_k {
        Some(k) if k < classes => k,
        Some(_) => 0,
        None if classes <= FULL_UP_TO_CLASSES => 0,
        None => DEFAULT_TOP_K,
    }
}

impl TeacherCache {
    /// The cache in `dir` for trainings on `source` under `transform` at `sizes` with
    /// `teachers` (those a training uses, in order) on `device`; `numerics` names how the
    /// teachers compute there (TF32 or not), part of the key.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dir: &Path,
        teachers: &[&Teacher],
        source: &Source,
        transform: &TrainTransform,
        sizes: &[(i64, i64)],
        device: Device,
        numerics: &str,
        top_k: Option<usize>,
    ) -> Result<TeacherCache> {
        let classes = teachers.first().map_or(0, |t| t.num_classes as usize);
        if let Some(t) = teachers.iter().find(|t| t.num_classes as usize != classes) {
            bail!("teacher `{}` predicts {} classes, `{}` {classes}: the cache stores one width", t.name, t.num_classes, teachers[0].name);
        }
        let k = kept(top_k, classes);
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(MAGIC);
        field(&VERSION.to_le_bytes());
        for t in teachers {
            field(t.cache_identity().as_bytes());
        }
        data_identity(source, &mut field)?;
        field(format!("{transform:?} {sizes:?} {} {numerics} k={k}", crate::device::name(device)).as_bytes());
        Ok(TeacherCache { dir: dir.to_path_buf(), base: h, classes, k, record: CacheRecord { top_k: k, ..Default::default() } })
    }

    /// The entry of the epoch that runs `schedule` with `teachers` teachers: read when it is
    /// there and sound, else to be written.
    pub fn epoch(&self, schedule: &Schedule, teachers: usize) -> Result<EpochCache> {
        let mut h = self.base.clone();
        for (batch, seed) in schedule.batches.iter().zip(&schedule.seeds) {
            h.update((batch.len() as u64).to_le_bytes());
            for &i in batch {
                h.update((i as u64).to_le_bytes());
            }
            h.update(seed.to_le_bytes());
        }
        let key: [u8; 32] = h.finalize().into();
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let path = self.dir.join(format!("{hex}.logits"));
        if let Some(reader) = Reader::open(&path, &key, teachers, self.classes, self.k, schedule.batches.len()) {
            crate::data::cache_dir::touch(&path);
            return Ok(EpochCache::Hit(reader));
        }
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating the cache folder {}", self.dir.display()))?;
        let tmp = self.dir.join(format!("{hex}.logits.{}.tmp", std::process::id()));
        let file = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut file = std::io::BufWriter::new(file);
        file.write_all(MAGIC)?;
        file.write_all(&VERSION.to_le_bytes())?;
        file.write_all(&key)?;
        for n in [teachers, self.classes, self.k, schedule.batches.len()] {
            file.write_all(&(n as u64).to_le_bytes())?;
        }
        Ok(EpochCache::Miss(Writer {
            path,
            tmp,
            file: Some(file),
            teachers,
            classes: self.classes,
            k: self.k,
            rows: Vec::with_capacity(schedule.batches.len()),
            pending: Vec::new(),
            pending_bytes: 0,
            checksum: Checksum::new(),
            written: HEADER as u64,
            failed: None,
        }))
    }
}

/// Hashes the training images and labels: the pixels of a set in memory, the files' paths,
/// sizes and modification times otherwise.
fn data_identity(source: &Source, field: &mut impl FnMut(&[u8])) -> Result<()> {
    match source {
        Source::Memory(set) => {
            field(b"memory");
            field(format!("{:?}", set.images.size()).as_bytes());
            field(set.pixels());
            let labels = crate::host::vec::<i64>(&set.labels).context("reading labels")?;
            field(&labels.iter().flat_map(|l| l.to_le_bytes()).collect::<Vec<u8>>());
        }
        Source::Files(list) | Source::Disk(_, list) => {
            field(format!("files reduced={}", list.reduced_decode).as_bytes());
            for (f, l) in list.files.iter().zip(&list.labels) {
                let meta = std::fs::metadata(f).with_context(|| format!("reading metadata of {}", f.display()))?;
                let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
                field(f.to_string_lossy().as_bytes());
                field(&[meta.len().to_le_bytes(), (mtime as u64).to_le_bytes(), (*l as u64).to_le_bytes()].concat());
            }
        }
    }
    Ok(())
}

impl Reader {
    /// The entry at `path` when it exists and matches the key and shape; None otherwise.
    fn open(path: &Path, key: &[u8; 32], teachers: usize, classes: usize, k: usize, steps: usize) -> Option<Reader> {
        let map = Mmap::open(path).ok()?;
        let b = map.bytes();
        let u64_at = |at: usize| -> Option<usize> { Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?) as usize) };
        if b.get(..8)? != MAGIC || b.get(8..12)? != VERSION.to_le_bytes() || b.get(12..44)? != key {
            return None;
        }
        if [u64_at(44)?, u64_at(52)?, u64_at(60)?, u64_at(68)?] != [teachers, classes, k, steps] {
            return None;
        }
        let counts_at = b.len().checked_sub(steps * 4 + 8)?;
        let mut at = HEADER;
        let mut offsets = Vec::with_capacity(steps);
        for s in 0..steps {
            let rows = u32::from_le_bytes(b.get(counts_at + 4 * s..counts_at + 4 * s + 4)?.try_into().ok()?) as usize;
            offsets.push((at, rows));
            at += teachers * teacher_bytes(rows, classes, k);
        }
        if at != counts_at {
            return None;
        }
        let mut sum = Checksum::new();
        sum.update(&b[HEADER..b.len() - 8]);
        if sum.0.to_le_bytes() != b[b.len() - 8..] {
            return None;
        }
        Some(Reader { map, teachers, classes, k, steps: offsets })
    }

    /// Bytes of the entry.
    pub fn bytes(&self) -> u64 {
        self.map.len as u64
    }

    /// The stored outputs of step `step` (`rows` images) for teachers `which` (indices into all
    /// `count` teachers; `which[j]` is stored j-th), on `device`: one upload.
    pub fn outputs(&self, step: usize, rows: usize, which: &[usize], count: usize, device: Device) -> Result<Vec<Option<TeacherOutputs>>> {
        let &(at, stored) = self.steps.get(step).ok_or_else(|| anyhow::anyhow!("the teacher cache holds no step {step}"))?;
        if stored != rows || which.len() != self.teachers {
            bail!("the teacher cache entry holds {stored} images of {} teachers at step {step}, the batch {rows} of {}", self.teachers, which.len());
        }
        let len = self.teachers * teacher_bytes(rows, self.classes, self.k);
        let record = crate::host::upload(&Tensor::f_from_data_size(&self.map.bytes()[at..at + len], &[len as i64], Kind::Uint8)?, device)?;
        let mut out: Vec<Option<TeacherOutputs>> = (0..count).map(|_| None).collect();
        for (j, logits) in decode(&record, self.teachers, rows, self.classes, self.k)?.into_iter().enumerate() {
            out[which[j]] = Some(TeacherOutputs { logits, taps: vec![] });
        }
        Ok(out)
    }
}

/// The logits of each teacher from one step's record (`[bytes]` uint8 on the device).
fn decode(record: &Tensor, teachers: usize, rows: usize, classes: usize, k: usize) -> Result<Vec<Tensor>> {
    let (r, c, kk) = (rows as i64, classes as i64, k as i64);
    let per = teacher_bytes(rows, classes, k) as i64;
    (0..teachers as i64)
        .map(|t| {
            let part = record.f_narrow(0, t * per, per)?;
            if k == 0 {
                return Ok(part.f_view_dtype(Kind::Float)?.f_view([r, c])?);
            }
            let values = part.f_narrow(0, 0, r * kk * 4)?.f_view_dtype(Kind::Float)?.f_view([r, kk])?;
            let classes_of = part.f_narrow(0, r * kk * 4, r * kk * 4)?.f_view_dtype(Kind::Int)?.f_view([r, kk])?.f_to_kind(Kind::Int64)?;
            let rest = part.f_narrow(0, r * kk * 8, r * 4)?.f_view_dtype(Kind::Float)?.f_view([r, 1])?;
            Ok(rest.f_expand([r, c], false)?.f_contiguous()?.f_scatter(1, &classes_of, &values)?)
        })
        .collect()
}

/// The stored form of `[rows, classes]` logits: themselves (`k` 0), or the `k` largest, their
/// classes, and the log of the mean exponential of the others; as one uint8 tensor.
pub fn encode(logits: &Tensor, k: usize) -> Result<Tensor> {
    let z = logits.f_to_kind(Kind::Float)?.f_contiguous()?;
    if k == 0 {
        return Ok(z.f_flatten(0, -1)?.f_view_dtype(Kind::Uint8)?);
    }
    let classes = z.size()[1];
    let (values, idx) = z.f_topk(k as i64, 1, true, true)?;
    let all = z.f_logsumexp([1], true)?;
    let top = values.f_logsumexp([1], true)?;
    // log Σ_{others} e^z = all + log(1 − e^{top − all}); floored so that a teacher certain of
    // its top k gives a very small rest, never −∞ (which would make the losses NaN).
    let others = all.f_add(&top.f_sub(&all)?.f_exp()?.f_neg()?.f_log1p()?)?;
    let rest = others.f_sub_scalar(((classes as usize - k) as f64).ln())?.f_maximum(&all.f_sub_scalar(60.0)?)?;
    let parts = [
        values.f_contiguous()?.f_flatten(0, -1)?.f_view_dtype(Kind::Uint8)?,
        idx.f_to_kind(Kind::Int)?.f_flatten(0, -1)?.f_view_dtype(Kind::Uint8)?,
        rest.f_contiguous()?.f_flatten(0, -1)?.f_view_dtype(Kind::Uint8)?,
    ];
    Ok(Tensor::f_cat(&parts, 0)?)
}

impl Writer {
    /// Records step outputs `outputs` of teachers `which` (`rows` images) and returns the
    /// outputs the training must learn from: what a later read of this entry gives.
    pub fn push(&mut self, outputs: &[Option<TeacherOutputs>], which: &[usize], rows: usize) -> Result<Vec<Option<TeacherOutputs>>> {
        if which.len() != self.teachers {
            bail!("{} teachers for an entry of {}", which.len(), self.teachers);
        }
        let mut parts = Vec::with_capacity(which.len());
        for &i in which {
            let o = outputs.get(i).and_then(|o| o.as_ref()).ok_or_else(|| anyhow::anyhow!("no outputs of teacher {i} to cache"))?;
            parts.push(encode(&o.logits, self.k)?);
        }
        let record = Tensor::f_cat(&parts, 0)?;
        let mut out: Vec<Option<TeacherOutputs>> = (0..outputs.len()).map(|_| None).collect();
        for (j, logits) in decode(&record, self.teachers, rows, self.classes, self.k)?.into_iter().enumerate() {
            out[which[j]] = Some(TeacherOutputs { logits, taps: vec![] });
        }
        if self.failed.is_none() {
            self.rows.push(rows as u32);
            self.pending_bytes += record.numel() as u64;
            self.pending.push(record);
            if self.pending_bytes > FLUSH_BYTES {
                if let Err(e) = self.flush() {
                    // The training goes on; only the entry is given up.
                    self.failed = Some(format!("{e:#}"));
                    self.pending.clear();
                }
            }
        }
        Ok(out)
    }

    /// Records a step whose every image was left out (`skip_bad`).
    pub fn skip(&mut self) {
        self.rows.push(0);
    }

    /// Writes the pending records (one read of the device for all of them).
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let all = Tensor::f_cat(&self.pending, 0)?;
        let mut bytes = vec![0u8; all.numel()];
        crate::host::bytes(&all, &mut bytes)?;
        self.checksum.update(&bytes);
        let file = self.file.as_mut().ok_or_else(|| anyhow::anyhow!("{} is finished", self.path.display()))?;
        file.write_all(&bytes).with_context(|| format!("writing {}", self.tmp.display()))?;
        self.written += bytes.len() as u64;
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Completes the entry and moves it into place; returns its bytes.
    pub fn finish(mut self) -> Result<u64> {
        if let Some(why) = self.failed.take() {
            bail!("writing {}: {why}", self.tmp.display());
        }
        self.flush()?;
        let counts: Vec<u8> = self.rows.iter().flat_map(|r| r.to_le_bytes()).collect();
        self.checksum.update(&counts);
        let mut file = self.file.take().ok_or_else(|| anyhow::anyhow!("{} is finished", self.path.display()))?;
        file.write_all(&counts)?;
        file.write_all(&self.checksum.0.to_le_bytes())?;
        file.flush().with_context(|| format!("writing {}", self.tmp.display()))?;
        drop(file);
        if let Err(e) = std::fs::rename(&self.tmp, &self.path) {
            let _ = std::fs::remove_file(&self.tmp);
            bail!("moving {} into place: {e}", self.tmp.display());
        }
        crate::data::cache_dir::after_use(&self.path);
        Ok(self.written + counts.len() as u64 + 8)
    }
}

impl Drop for Writer {
    /// A failed epoch leaves no temporary behind.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostRead;

    #[test]
    fn full_logits_round_trip_exactly() {
        let z = Tensor::from_slice(&[1.5f32, -2.0, 0.25, 7.0, 3.0, -1.0]).view([2, 3]);
        let record = encode(&z, 0).unwrap();
        assert_eq!(record.numel(), 24);
        let back = decode(&record, 1, 2, 3, 0).unwrap();
        assert!(back[0].equal(&z));
    }

    #[test]
    fn top_k_keeps_the_largest_and_the_mass_of_the_rest() {
        // Golden: logits [4, 1, 0, -1, 2], k = 2 keeps 4 (class 0) and 2 (class 4); the rest
        // stands for e^1 + e^0 + e^-1 = 4.0862: ln(4.0862 / 3) = 0.30904.
        let z = Tensor::from_slice(&[4.0f32, 1.0, 0.0, -1.0, 2.0]).view([1, 5]);
        let back = &decode(&encode(&z, 2).unwrap(), 1, 1, 5, 2).unwrap()[0];
        let got: Vec<f32> = crate::host::vec(&back.flatten(0, -1)).unwrap();
        let rest = ((1f64.exp() + 1.0 + (-1f64).exp()) / 3.0).ln() as f32;
        for (g, w) in got.iter().zip([4.0, rest, rest, rest, 2.0]) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
        // The softmax at temperature 1 keeps every kept probability and the total of the rest.
        let (p, q) = (z.softmax(1, Kind::Float), back.softmax(1, Kind::Float));
        assert!((p.get(0).get(0).read_f64() - q.get(0).get(0).read_f64()).abs() < 1e-6);
        assert!((p.get(0).narrow(0, 1, 3).sum(Kind::Float).read_f64() - q.get(0).narrow(0, 1, 3).sum(Kind::Float).read_f64()).abs() < 1e-6);
    }

    #[test]
    fn a_certain_teacher_gives_a_finite_rest() {
        let z = Tensor::from_slice(&[200.0f32, 0.0, 0.0, 0.0]).view([1, 4]);
        let back = &decode(&encode(&z, 1).unwrap(), 1, 1, 4, 1).unwrap()[0];
        assert!(back.isfinite().all().read_i64() == 1);
        assert!(back.log_softmax(1, Kind::Float).isfinite().all().read_i64() == 1);
    }

    #[test]
    fn default_compression_by_class_count() {
        assert_eq!(kept(None, 10), 0);
        assert_eq!(kept(None, 100), 0);
        assert_eq!(kept(None, 1000), DEFAULT_TOP_K);
        assert_eq!(kept(Some(5), 1000), 5);
        assert_eq!(kept(Some(20), 10), 0, "k at least the classes keeps everything");
    }

    fn outputs(seed: i64, rows: i64, classes: i64) -> Vec<Option<TeacherOutputs>> {
        let mut g = crate::data::rng::Rng::new(seed as u64);
        (0..2)
            .map(|_| {
                let v: Vec<f32> = (0..rows * classes).map(|_| g.below(1000) as f32 / 100.0 - 5.0).collect();
                Some(TeacherOutputs { logits: Tensor::from_slice(&v).view([rows, classes]), taps: vec![] })
            })
            .collect()
    }

    #[test]
    fn an_entry_written_is_read_back_and_a_damaged_one_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        for k in [0usize, 3] {
            let mut cache = TeacherCache { dir: dir.path().to_path_buf(), base: Sha256::new(), classes: 12, k, record: CacheRecord::default() };
            cache.base.update([k as u8]);
            let schedule = Schedule { batches: vec![vec![0, 1, 2, 3], vec![4, 5, 6]], seeds: vec![1, 2] };
            let EpochCache::Miss(mut w) = cache.epoch(&schedule, 2).unwrap() else { panic!("an empty folder has no entry") };
            let steps = [outputs(1, 4, 12), outputs(2, 3, 12)];
            let learned: Vec<_> = steps.iter().zip([4, 3]).map(|(o, rows)| w.push(o, &[0, 1], rows).unwrap()).collect();
            let bytes = w.finish().unwrap();
            let EpochCache::Hit(r) = cache.epoch(&schedule, 2).unwrap() else { panic!("the entry was written") };
            assert_eq!(r.bytes(), bytes);
            for (s, rows) in [(0, 4), (1, 3)] {
                let read = r.outputs(s, rows, &[0, 1], 2, Device::Cpu).unwrap();
                for t in 0..2 {
                    assert!(read[t].as_ref().unwrap().logits.equal(&learned[s][t].as_ref().unwrap().logits), "k {k} step {s} teacher {t}");
                }
                if k == 0 {
                    assert!(read[0].as_ref().unwrap().logits.equal(&steps[s][0].as_ref().unwrap().logits), "full logits are kept exactly");
                }
            }
            assert!(r.outputs(0, 5, &[0, 1], 2, Device::Cpu).is_err(), "a batch of another size is refused");
            // Another schedule is another key.
            let other = Schedule { batches: vec![vec![0, 1, 2, 3], vec![4, 5, 7]], seeds: vec![1, 2] };
            assert!(matches!(cache.epoch(&other, 2).unwrap(), EpochCache::Miss(_)));
            // One flipped byte makes the entry a miss.
            drop(r);
            let entry = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "logits")).unwrap();
            let mut b = std::fs::read(&entry).unwrap();
            b[HEADER + 5] ^= 1;
            std::fs::write(&entry, b).unwrap();
            assert!(matches!(cache.epoch(&schedule, 2).unwrap(), EpochCache::Miss(_)));
            std::fs::remove_file(entry).unwrap();
        }
    }
}
