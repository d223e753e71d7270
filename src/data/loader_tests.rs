//! Tests of the batch loader on generated JPEG folders and in-memory sets: same batches for any
//! number of workers, evaluation views, bad files, and workers that stop with the consumer.

use super::*;
use crate::data::decode::DEFAULT_MAX_PIXELS;
use crate::data::transform::geometry::RandomResizedCrop;
use crate::data::transform::TrainCrop;
use std::path::{Path, PathBuf};

/// `n` JPEGs of assorted sizes in two classes; returns the folder and its file list.
fn folder(n: usize) -> (tempfile::TempDir, FileList) {
    let t = tempfile::tempdir().unwrap();
    let (mut files, mut labels, mut sizes) = (vec![], vec![], vec![]);
    for i in 0..n {
        let (w, h) = (20 + (i * 7) % 31, 18 + (i * 11) % 27);
        let path = t.path().join(format!("{}/{i:03}.jpg", ["a", "b"][i % 2]));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let img = image::RgbImage::from_fn(w as u32, h as u32, |x, y| image::Rgb([(x as usize * 9 + i) as u8, (y * 5) as u8, (i * 3) as u8]));
        img.save_with_format(&path, image::ImageFormat::Jpeg).unwrap();
        files.push(path);
        labels.push((i % 2) as i64);
        sizes.push((h as u32, w as u32));
    }
    let list =
        FileList { files, labels, class_names: vec!["a".into(), "b".into()], sizes, skipped: vec![], max_pixels: DEFAULT_MAX_PIXELS, reduced_decode: true };
    (t, list)
}

fn train_render() -> Render {
    Render::Train(TrainTransform { crop: TrainCrop::RandomResized(RandomResizedCrop::default()), horizontal_flip: true })
}

fn schedule(n: usize, batch: usize, seed: u64) -> Schedule {
    let mut rng = Rng::new(seed);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let batches: Vec<Vec<usize>> = order.chunks(batch).map(|c| c.to_vec()).collect();
    let seeds = batches.iter().map(|_| rng.next_u64()).collect();
    Schedule { batches, seeds }
}

/// Every batch as plain bytes per size plus labels.
fn collect(source: &Source, sched: &Schedule, render: &Render, sizes: &[(i64, i64)], threads: usize) -> Vec<(Vec<Vec<u8>>, Vec<i64>)> {
    stream(source, sched, render, sizes, Workers { threads, ahead: 2 }, false, |s| {
        s.map(|b| {
            let b = b?;
            let views = b.views.iter().map(|v| crate::host::vec::<u8>(&v.flatten(0, -1)).unwrap()).collect();
            Ok((views, crate::host::vec::<i64>(&b.labels).unwrap()))
        })
        .collect()
    })
    .unwrap()
}

#[test]
fn same_batches_whatever_the_worker_count() {
    let (_t, list) = folder(30);
    let source = Source::Files(list);
    let sched = schedule(30, 8, 4);
    let sizes = [(24, 24), (12, 16)];
    let inline = collect(&source, &sched, &train_render(), &sizes, 0);
    assert_eq!(inline.len(), 4);
    assert_eq!(inline[3].1.len(), 6, "the last batch keeps its 6 samples");
    assert_eq!(inline[0].0[0].len(), 8 * 24 * 24 * 3);
    assert_eq!(inline[0].0[1].len(), 8 * 12 * 16 * 3);
    for threads in [1, 2, 3, 7] {
        assert!(collect(&source, &sched, &train_render(), &sizes, threads) == inline, "{threads} workers give other batches");
    }
    // Another seed gives other views of the same samples.
    let mut other = sched.clone();
    other.seeds.iter_mut().for_each(|s| *s ^= 1);
    assert!(collect(&source, &other, &train_render(), &sizes, 2) != inline);
}

#[test]
fn labels_follow_the_schedule() {
    let (_t, list) = folder(10);
    let expected: Vec<i64> = [3usize, 0, 7].iter().map(|&i| list.labels[i]).collect();
    let source = Source::Files(list);
    let sched = Schedule { batches: vec![vec![3, 0, 7]], seeds: vec![1] };
    let got = collect(&source, &sched, &train_render(), &[(8, 8)], 1);
    assert_eq!(got[0].1, expected);
}

#[test]
fn evaluation_views_equal_the_transform_and_need_no_seeds() {
    let (_t, list) = folder(5);
    let path = list.files[2].clone();
    let source = Source::Files(list);
    let eval = EvalTransform { resize_shorter: Some(20), center_crop: Some(16) };
    let sched = Schedule { batches: vec![vec![2]], seeds: vec![] };
    let got = collect(&source, &sched, &Render::Eval(eval.clone()), &[(16, 16), (8, 8)], 2);
    let img = crate::data::decode::decode_file(&path, DEFAULT_MAX_PIXELS).unwrap();
    let (mut a, mut b) = (vec![0u8; 16 * 16 * 3], vec![0u8; 8 * 8 * 3]);
    eval.render(img.as_raw(), (img.height() as i64, img.width() as i64), &[(16, 16), (8, 8)], &mut [&mut a, &mut b]).unwrap();
    assert_eq!(got[0].0, vec![a, b]);
}

#[test]
fn memory_sets_render_pad_crops_of_their_own_pixels() {
    let n = 6i64;
    let images = Tensor::arange(n * 4 * 5 * 3, (Kind::Int64, tch::Device::Cpu)).remainder(251).to_kind(Kind::Uint8).view([n, 4, 5, 3]);
    let set = ImageSet::new(images.copy(), Tensor::from_slice(&[0i64, 1, 0, 1, 0, 1]), vec!["x".into(), "y".into()]).unwrap();
    let source = Source::Memory(set);
    let none = Render::Train(TrainTransform { crop: TrainCrop::PadCrop { padding: 0 }, horizontal_flip: false });
    let sched = Schedule { batches: vec![vec![4, 1]], seeds: vec![9] };
    let got = collect(&source, &sched, &none, &[(4, 5)], 2);
    let want = crate::host::vec::<u8>(&images.index_select(0, &Tensor::from_slice(&[4i64, 1])).flatten(0, -1)).unwrap();
    assert_eq!(got[0].0[0], want, "no padding and no flip is the image itself");
    assert_eq!(got[0].1, vec![0, 1]);
}

fn with_bad_file(list: &mut FileList, at: usize) -> PathBuf {
    let bad = list.files[at].clone();
    let bytes = std::fs::read(&bad).unwrap();
    // Keep the end marker so only a decode (not the scan) finds the damage.
    let mut broken = bytes[..bytes.len() / 3].to_vec();
    broken.extend([0xFF, 0xD9]);
    std::fs::write(&bad, broken).unwrap();
    bad
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn a_file_that_fails_to_decode_is_named_or_skipped() {
    let (_t, mut list) = folder(12);
    let bad = with_bad_file(&mut list, 5);
    let source = Source::Files(list);
    let sched = Schedule { batches: vec![vec![0, 1, 2], vec![4, 5, 6], vec![7, 8, 9]], seeds: vec![1, 2, 3] };
    for threads in [0, 2] {
        let err = stream(&source, &sched, &train_render(), &[(8, 8)], Workers { threads, ahead: 1 }, false, |s| s.collect::<Result<Vec<_>>>()).err().unwrap();
        assert!(crate::error::is_bad_input(&err), "{err:#}");
        assert!(format!("{err:#}").contains(&name(&bad)), "{err:#}");
    }
    let (sizes, skipped) = stream(&source, &sched, &train_render(), &[(8, 8)], Workers { threads: 2, ahead: 1 }, true, |s| {
        let batches = s.collect::<Result<Vec<_>>>()?;
        Ok((batches.iter().map(|b| b.labels.size()[0]).collect::<Vec<_>>(), batches.iter().flat_map(|b| b.skipped.clone()).collect::<Vec<_>>()))
    })
    .unwrap();
    assert_eq!(sizes, vec![3, 2, 3]);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].contains(&name(&bad)));
}

#[test]
fn workers_stop_when_the_consumer_does() {
    let (_t, list) = folder(40);
    let source = Source::Files(list);
    let sched = schedule(40, 2, 1);
    let first = stream(&source, &sched, &train_render(), &[(8, 8)], Workers { threads: 3, ahead: 1 }, false, |s| {
        let b = s.next().unwrap()?;
        Ok(b.labels.size()[0])
    })
    .unwrap();
    assert_eq!(first, 2);
    // An error from the consumer comes back as is, and the workers still wind down.
    let err = stream(&source, &sched, &train_render(), &[(8, 8)], Workers { threads: 2, ahead: 1 }, false, |_| -> Result<()> { anyhow::bail!("step failed") });
    assert_eq!(err.unwrap_err().to_string(), "step failed");
}

#[test]
fn waiting_is_measured() {
    let (_t, list) = folder(16);
    let source = Source::Files(list);
    let sched = schedule(16, 4, 2);
    let waited = stream(&source, &sched, &train_render(), &[(32, 32)], Workers { threads: 0, ahead: 1 }, false, |s| {
        for b in s.by_ref() {
            b?;
        }
        Ok(s.waited())
    })
    .unwrap();
    assert!(waited > Duration::ZERO, "rendering inline is all waiting");
}

#[test]
fn reduced_decode_renders_the_same_views_nearly_the_same() {
    // Smooth photos several times the model size: most views decode at 1/2 to 1/8.
    let t = tempfile::tempdir().unwrap();
    let (mut files, mut sizes) = (vec![], vec![]);
    for i in 0..8u32 {
        let (w, h) = (300 + 37 * i, 420 - 23 * i);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let r = 128.0 + 90.0 * ((x as f64) / (15.0 + i as f64)).sin() * ((y as f64) / 25.0).cos();
            image::Rgb([r as u8, (x * 255 / w) as u8, (y * 255 / h) as u8])
        });
        let path = t.path().join(format!("a/{i}.jpg"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save_with_format(&path, image::ImageFormat::Jpeg).unwrap();
        files.push(path);
        sizes.push((h, w));
    }
    let list =
        FileList { files, labels: vec![0; 8], class_names: vec!["a".into()], sizes, skipped: vec![], max_pixels: DEFAULT_MAX_PIXELS, reduced_decode: true };
    let full = Source::Files(FileList { reduced_decode: false, ..list.clone() });
    let reduced = Source::Files(list);
    let sched = schedule(8, 4, 9);
    let sizes = [(40, 40), (24, 24)];
    let eval = Render::Eval(EvalTransform { resize_shorter: Some(48), center_crop: Some(40) });
    for render in [train_render(), eval] {
        let a = collect(&full, &sched, &render, &sizes, 0);
        let b = collect(&reduced, &sched, &render, &sizes, 0);
        assert_eq!(b, collect(&reduced, &sched, &render, &sizes, 2), "reduced decoding is the same for any worker count");
        let (mut diff, mut n, mut differ) = (0.0, 0usize, false);
        for ((va, la), (vb, lb)) in a.iter().zip(&b) {
            assert_eq!(la, lb);
            for (x, y) in va.iter().zip(vb) {
                differ |= x != y;
                diff += x.iter().zip(y).map(|(&p, &q)| (p as f64 - q as f64).abs()).sum::<f64>();
                n += x.len();
            }
        }
        let mean = diff / n as f64;
        assert!(differ, "the reduced path was taken");
        assert!(mean < 2.0, "mean difference {mean} grey levels from the full decode");
    }
}

/// Two ranks' shares of every batch, rendered apart, are the rows of the whole batch: the same
/// samples, labels and random views (resized crops and flips drawn from per-sample seeds).
#[test]
fn shards_render_the_rows_of_the_whole_batch() {
    let (_t, list) = folder(24);
    let source = Source::Files(list);
    let sched = schedule(24, 8, 11);
    let sizes = [(16, 16)];
    let whole = collect(&source, &sched, &train_render(), &sizes, 1);
    let shards: Vec<_> = (0..2).map(|r| collect(&source, &sched.shard(r, 2).unwrap(), &train_render(), &sizes, 1)).collect();
    let row = 16 * 16 * 3;
    for (k, (views, labels)) in whole.iter().enumerate() {
        let (v0, l0) = &shards[0][k];
        let (v1, l1) = &shards[1][k];
        assert_eq!([l0.as_slice(), l1.as_slice()].concat(), *labels, "batch {k}: labels");
        assert_eq!([v0[0].as_slice(), v1[0].as_slice()].concat(), views[0], "batch {k}: pixels");
        assert_eq!(v0[0].len(), 4 * row);
    }
    // Without the seed moved by the slice's start, rank 1 would draw rank 0's views.
    let mut wrong = sched.shard(1, 2).unwrap();
    wrong.seeds = sched.seeds.clone();
    assert!(collect(&source, &wrong, &train_render(), &sizes, 1)[0].0[0] != whole[0].0[0][4 * row..]);
    assert!(sched.shard(0, 3).is_err(), "8 samples do not split over 3 ranks");
}
