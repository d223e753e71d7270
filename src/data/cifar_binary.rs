//! Reading CIFAR-10 and CIFAR-100 in the official "binary version" format (`.bin` record files
//! plus a class-names text file) into an in-memory [`ImageSet`].
//!
//! A record is one label byte (CIFAR-10) or a coarse and a fine label byte (CIFAR-100, of which
//! we keep the fine one), then 3072 pixel bytes: the red, green and blue planes, each 32×32
//! row-major. Records are transposed to the crate's NHWC layout while they are copied.

use super::ImageSet;
use anyhow::Result;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Side of every CIFAR image, in pixels.
const SIDE: usize = 32;
/// Pixels per channel plane.
const PLANE: usize = SIDE * SIDE;
/// Pixel bytes per record (three planes).
const PIXELS: usize = 3 * PLANE;

/// Which of the two data sets a file holds; they differ in record layout and class count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarVariant {
    /// 10 classes; records of 1 label byte + 3072 pixel bytes.
    Cifar10,
    /// 100 fine classes; records of a coarse and a fine label byte + 3072 pixel bytes.
    Cifar100,
}

/// Which standard files of an extracted folder are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// CIFAR-10: `data_batch_1.bin` … `data_batch_5.bin`, in that order; CIFAR-100: `train.bin`.
    Train,
    /// CIFAR-10: `test_batch.bin`; CIFAR-100: `test.bin`.
    Test,
}

impl CifarVariant {
    fn name(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => "CIFAR-10",
            CifarVariant::Cifar100 => "CIFAR-100",
        }
    }

    /// Label bytes before the pixels of a record.
    fn label_bytes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 1,
            CifarVariant::Cifar100 => 2,
        }
    }

    fn record_size(self) -> usize {
        self.label_bytes() + PIXELS
    }

    fn num_classes(self) -> usize {
        match self {
            CifarVariant::Cifar10 => 10,
            CifarVariant::Cifar100 => 100,
        }
    }

    fn other(self) -> CifarVariant {
        match self {
            CifarVariant::Cifar10 => CifarVariant::Cifar100,
            CifarVariant::Cifar100 => CifarVariant::Cifar10,
        }
    }

    /// The file holding the class names, one per line.
    fn names_file(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => "batches.meta.txt",
            CifarVariant::Cifar100 => "fine_label_names.txt",
        }
    }

    /// Name of the folder the official tarball extracts to.
    fn folder_name(self) -> &'static str {
        match self {
            CifarVariant::Cifar10 => "cifar-10-batches-bin",
            CifarVariant::Cifar100 => "cifar-100-binary",
        }
    }

    /// The standard record files of `split`, in the order their records are concatenated.
    fn split_files(self, split: Split) -> Vec<String> {
        match (self, split) {
            (CifarVariant::Cifar10, Split::Train) => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            (CifarVariant::Cifar10, Split::Test) => vec!["test_batch.bin".into()],
            (CifarVariant::Cifar100, Split::Train) => vec!["train.bin".into()],
            (CifarVariant::Cifar100, Split::Test) => vec!["test.bin".into()],
        }
    }
}

/// Loads one split of CIFAR-10 or CIFAR-100 from the official binary files.
///
/// `path` is either the extracted folder (`cifar-10-batches-bin/` or `cifar-100-binary/`), whose
/// standard files for `split` are read and whose class-names file (`batches.meta.txt`, or
/// `fine_label_names.txt` for CIFAR-100) is required; or one record file, read whole whatever
/// `split` says, whose class names come from the names file next to it when there is one and
/// are otherwise the numbers `"0"`, `"1"`, … (the labels are the same either way).
///
/// The result has images `[N, 32, 32, 3]` uint8 RGB and labels `[N]` int64 (the fine label for
/// CIFAR-100). Anything wrong with the files — missing, a length that is not a whole number of
/// records, a label out of range, a names file with the wrong number of names — is bad input
/// naming the file.
pub fn load(path: &Path, variant: CifarVariant, split: Split) -> Result<ImageSet> {
    let (files, class_names) = if path.is_dir() {
        let files = variant.split_files(split).iter().map(|f| expect_file(path, f, variant, split)).collect::<Result<Vec<_>>>()?;
        let names_path = path.join(variant.names_file());
        if !names_path.is_file() {
            return Err(crate::bad_input!(
                "{} folder {} has no class-names file {} (expected {})",
                variant.name(),
                path.display(),
                variant.names_file(),
                names_path.display()
            ));
        }
        (files, read_names(&names_path, variant)?)
    } else if path.is_file() {
        let beside = path.parent().unwrap_or(Path::new("")).join(variant.names_file());
        let names = if beside.is_file() { read_names(&beside, variant)? } else { (0..variant.num_classes()).map(|i| i.to_string()).collect() };
        (vec![path.to_path_buf()], names)
    } else {
        return Err(crate::bad_input!(
            "{} data {} does not exist (expected the extracted {} folder or one of its .bin files)",
            variant.name(),
            path.display(),
            variant.folder_name()
        ));
    };

    let mut pixels: Vec<u8> = vec![];
    let mut labels: Vec<i64> = vec![];
    for file in &files {
        decode_file(file, variant, &mut pixels, &mut labels)?;
    }
    let n = labels.len() as i64;
    let images = Tensor::f_from_data_size(&pixels, &[n, SIDE as i64, SIDE as i64, 3], Kind::Uint8)?;
    let label_bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_ne_bytes()).collect();
    let labels = Tensor::f_from_data_size(&label_bytes, &[n], Kind::Int64)?;
    ImageSet::new(images, labels, class_names)
}

/// `dir/name`, or bad input saying which file of the split was expected.
fn expect_file(dir: &Path, name: &str, variant: CifarVariant, split: Split) -> Result<PathBuf> {
    let file = dir.join(name);
    if file.is_file() {
        return Ok(file);
    }
    let nested = dir.join(variant.folder_name());
    let hint = if nested.is_dir() { format!("; did you mean the folder {}?", nested.display()) } else { String::new() };
    Err(crate::bad_input!(
        "{} folder {} has no {name} (expected {} for the {} split of the official binary version){hint}",
        variant.name(),
        dir.display(),
        file.display(),
        match split {
            Split::Train => "train",
            Split::Test => "test",
        }
    ))
}

/// The class names in `path`: one per line, trailing blank lines ignored, exactly as many as
/// the variant has classes.
fn read_names(path: &Path, variant: CifarVariant) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::bad_input!("cannot read class-names file {}: {e}", path.display()))?;
    let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while names.last().is_some_and(|n| n.is_empty()) {
        names.pop();
    }
    if names.len() != variant.num_classes() {
        return Err(crate::bad_input!(
            "class-names file {} has {} lines but {} has {} classes (one name per line)",
            path.display(),
            names.len(),
            variant.name(),
            variant.num_classes()
        ));
    }
    if let Some(i) = names.iter().position(|n| n.is_empty()) {
        return Err(crate::bad_input!("class-names file {}: line {} is empty", path.display(), i + 1));
    }
    Ok(names)
}

/// Appends the records of `file` to `pixels` (HWC) and `labels`.
fn decode_file(file: &Path, variant: CifarVariant, pixels: &mut Vec<u8>, labels: &mut Vec<i64>) -> Result<()> {
    let bytes = std::fs::read(file).map_err(|e| crate::bad_input!("cannot read {} file {}: {e}", variant.name(), file.display()))?;
    let record = variant.record_size();
    if bytes.is_empty() {
        return Err(crate::bad_input!("{} file {} is empty", variant.name(), file.display()));
    }
    if bytes.len() % record != 0 {
        let other = variant.other();
        let hint = if bytes.len() % other.record_size() == 0 {
            format!("; its length fits {} records of {} bytes: is it a {} file?", other.name(), other.record_size(), other.name())
        } else {
            String::new()
        };
        return Err(crate::bad_input!(
            "{} file {} is {} bytes, not a multiple of the {} record size {record} bytes{hint}",
            variant.name(),
            file.display(),
            bytes.len(),
            variant.name()
        ));
    }
    let classes = variant.num_classes();
    let label_at = variant.label_bytes() - 1;
    pixels.reserve(bytes.len() / record * PIXELS);
    labels.reserve(bytes.len() / record);
    for (index, rec) in bytes.chunks_exact(record).enumerate() {
        let label = rec[label_at] as usize;
        if label >= classes {
            return Err(crate::bad_input!("{} file {}: record {index} has label {label}, outside 0..{classes}", variant.name(), file.display()));
        }
        labels.push(label as i64);
        let planes = &rec[variant.label_bytes()..];
        let start = pixels.len();
        pixels.resize(start + PIXELS, 0);
        for (p, hwc) in pixels[start..].chunks_exact_mut(3).enumerate() {
            hwc[0] = planes[p];
            hwc[1] = planes[PLANE + p];
            hwc[2] = planes[2 * PLANE + p];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::is_bad_input;

    /// Pixel byte of record `r` in channel `c` at plane position `p`; mixes all three so a
    /// wrong transpose, record order or channel order shows up as a mismatch.
    fn pixel(r: usize, c: usize, p: usize) -> u8 {
        ((r * 53 + c * 101 + p * 7) ^ (p >> 5) ^ (r << 4)) as u8
    }

    /// Label of record `r` (a global index across the files of a split).
    fn label(variant: CifarVariant, r: usize) -> u8 {
        ((r * 37 + 3) % variant.num_classes()) as u8
    }

    /// One record of `variant` in the official planar layout.
    fn record(variant: CifarVariant, r: usize, label: u8) -> Vec<u8> {
        let mut out = match variant {
            CifarVariant::Cifar10 => vec![label],
            CifarVariant::Cifar100 => vec![label / 5, label],
        };
        for c in 0..3 {
            out.extend((0..PLANE).map(|p| pixel(r, c, p)));
        }
        out
    }

    /// Records `first..first + n` with their generated labels.
    fn records(variant: CifarVariant, first: usize, n: usize) -> Vec<u8> {
        (first..first + n).flat_map(|r| record(variant, r, label(variant, r))).collect()
    }

    fn names_text(variant: CifarVariant, prefix: &str) -> String {
        (0..variant.num_classes()).map(|i| format!("{prefix}{i}\n")).collect::<String>() + "\n\n"
    }

    /// An extracted folder with 3 records per CIFAR-10 batch (train records 0..15, test
    /// 100..103) or 4 train / 2 test records for CIFAR-100.
    fn write_folder(dir: &Path, variant: CifarVariant) {
        match variant {
            CifarVariant::Cifar10 => {
                for b in 0..5 {
                    std::fs::write(dir.join(format!("data_batch_{}.bin", b + 1)), records(variant, b * 3, 3)).unwrap();
                }
                std::fs::write(dir.join("test_batch.bin"), records(variant, 100, 3)).unwrap();
                std::fs::write(dir.join("batches.meta.txt"), names_text(variant, "c")).unwrap();
            }
            CifarVariant::Cifar100 => {
                std::fs::write(dir.join("train.bin"), records(variant, 0, 4)).unwrap();
                std::fs::write(dir.join("test.bin"), records(variant, 100, 2)).unwrap();
                std::fs::write(dir.join("fine_label_names.txt"), names_text(variant, "fine")).unwrap();
                std::fs::write(dir.join("coarse_label_names.txt"), (0..20).map(|i| format!("coarse{i}\n")).collect::<String>()).unwrap();
            }
        }
    }

    /// Checks that `set` holds records `ids` in that order, pixel by pixel in HWC.
    fn assert_records(set: &ImageSet, variant: CifarVariant, ids: &[usize]) {
        assert_eq!(set.images.size(), [ids.len() as i64, 32, 32, 3]);
        let got = crate::host::vec::<u8>(&set.images.view([-1])).unwrap();
        let mut want = Vec::with_capacity(got.len());
        for &r in ids {
            for p in 0..PLANE {
                want.extend((0..3).map(|c| pixel(r, c, p)));
            }
        }
        assert!(got == want, "pixels differ from the HWC transpose of the records");
        let labels = crate::host::vec::<i64>(&set.labels).unwrap();
        assert_eq!(labels, ids.iter().map(|&r| label(variant, r) as i64).collect::<Vec<_>>());
    }

    fn expect_bad(result: Result<ImageSet>, needles: &[&str]) -> String {
        let err = result.expect_err("expected bad input");
        let msg = format!("{err:#}");
        assert!(is_bad_input(&err), "not bad input: {msg}");
        for n in needles {
            assert!(msg.contains(n), "message lacks {n:?}: {msg}");
        }
        msg
    }

    #[test]
    fn cifar10_train_is_the_five_batches_in_order_and_test_is_test_batch() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), CifarVariant::Cifar10);
        let train = load(dir.path(), CifarVariant::Cifar10, Split::Train).unwrap();
        assert_records(&train, CifarVariant::Cifar10, &(0..15).collect::<Vec<_>>());
        assert_eq!(train.class_names, (0..10).map(|i| format!("c{i}")).collect::<Vec<_>>());
        let test = load(dir.path(), CifarVariant::Cifar10, Split::Test).unwrap();
        assert_records(&test, CifarVariant::Cifar10, &[100, 101, 102]);
    }

    #[test]
    fn cifar100_uses_fine_labels_and_fine_names() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), CifarVariant::Cifar100);
        let train = load(dir.path(), CifarVariant::Cifar100, Split::Train).unwrap();
        assert_records(&train, CifarVariant::Cifar100, &[0, 1, 2, 3]);
        assert_eq!(train.num_classes(), 100);
        assert_eq!(train.class_names[99], "fine99");
        let test = load(dir.path(), CifarVariant::Cifar100, Split::Test).unwrap();
        assert_records(&test, CifarVariant::Cifar100, &[100, 101]);
        // A fine label above 19 proves the fine byte is read, not the coarse one.
        assert!(crate::host::vec::<i64>(&train.labels).unwrap().iter().any(|&l| l >= 20));
    }

    #[test]
    fn single_file_reads_names_beside_it_or_numbers_them() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), CifarVariant::Cifar10);
        let one = load(&dir.path().join("data_batch_2.bin"), CifarVariant::Cifar10, Split::Test).unwrap();
        assert_records(&one, CifarVariant::Cifar10, &[3, 4, 5]);
        assert_eq!(one.class_names[0], "c0");

        let lone = tempfile::tempdir().unwrap();
        let file = lone.path().join("mine.bin");
        std::fs::write(&file, records(CifarVariant::Cifar100, 7, 2)).unwrap();
        let set = load(&file, CifarVariant::Cifar100, Split::Train).unwrap();
        assert_records(&set, CifarVariant::Cifar100, &[7, 8]);
        assert_eq!(set.class_names, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn wrong_length_names_the_file_and_suggests_the_other_variant() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("train.bin");
        std::fs::write(&file, records(CifarVariant::Cifar100, 0, 2)).unwrap();
        let msg = expect_bad(load(&file, CifarVariant::Cifar10, Split::Train), &["train.bin", "6148 bytes", "3073", "CIFAR-100"]);
        assert!(msg.contains("is it a CIFAR-100 file"), "{msg}");

        let mut junk = records(CifarVariant::Cifar10, 0, 1);
        junk.extend([0, 0]);
        std::fs::write(&file, &junk).unwrap();
        let msg = expect_bad(load(&file, CifarVariant::Cifar10, Split::Train), &["train.bin", "3075 bytes", "3073"]);
        assert!(!msg.contains("is it a"), "neither record size divides 3075: {msg}");

        std::fs::write(&file, records(CifarVariant::Cifar10, 0, 2)).unwrap();
        expect_bad(load(&file, CifarVariant::Cifar100, Split::Train), &["train.bin", "6146 bytes", "3074", "is it a CIFAR-10 file"]);

        std::fs::write(&file, b"").unwrap();
        expect_bad(load(&file, CifarVariant::Cifar10, Split::Train), &["train.bin", "empty"]);
    }

    #[test]
    fn label_out_of_range_names_file_and_record() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), CifarVariant::Cifar10);
        let mut bytes = records(CifarVariant::Cifar10, 6, 3);
        bytes[3073] = 10;
        std::fs::write(dir.path().join("data_batch_3.bin"), &bytes).unwrap();
        expect_bad(load(dir.path(), CifarVariant::Cifar10, Split::Train), &["data_batch_3.bin", "record 1", "label 10"]);

        let file = dir.path().join("c100.bin");
        let mut bytes = records(CifarVariant::Cifar100, 0, 2);
        bytes[3074 + 1] = 100;
        std::fs::write(&file, &bytes).unwrap();
        expect_bad(load(&file, CifarVariant::Cifar100, Split::Train), &["c100.bin", "record 1", "label 100"]);
    }

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), CifarVariant::Cifar10);
        std::fs::remove_file(dir.path().join("data_batch_4.bin")).unwrap();
        expect_bad(load(dir.path(), CifarVariant::Cifar10, Split::Train), &["data_batch_4.bin"]);
        // The test split does not need the missing batch.
        assert_eq!(load(dir.path(), CifarVariant::Cifar10, Split::Test).unwrap().len(), 3);

        std::fs::remove_file(dir.path().join("batches.meta.txt")).unwrap();
        expect_bad(load(dir.path(), CifarVariant::Cifar10, Split::Test), &["batches.meta.txt"]);

        let gone = dir.path().join("nowhere");
        expect_bad(load(&gone, CifarVariant::Cifar100, Split::Test), &["nowhere", "cifar-100-binary"]);

        // Pointing at the folder above the extracted one gets a hint.
        let parent = tempfile::tempdir().unwrap();
        let inner = parent.path().join("cifar-100-binary");
        std::fs::create_dir(&inner).unwrap();
        write_folder(&inner, CifarVariant::Cifar100);
        expect_bad(load(parent.path(), CifarVariant::Cifar100, Split::Train), &["train.bin", "did you mean"]);
    }

    #[test]
    fn names_file_with_the_wrong_count_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), CifarVariant::Cifar10);
        std::fs::write(dir.path().join("batches.meta.txt"), "a\nb\nc\n").unwrap();
        expect_bad(load(dir.path(), CifarVariant::Cifar10, Split::Test), &["batches.meta.txt", "3 lines", "10 classes"]);
        // The names file beside a single .bin is checked too.
        expect_bad(load(&dir.path().join("test_batch.bin"), CifarVariant::Cifar10, Split::Test), &["batches.meta.txt"]);
    }
}
