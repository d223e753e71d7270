//! Tests of the ImageFolder loader and its use of the cache, on small generated PNG/JPEG trees.

use super::*;
use crate::error::is_bad_input;
use crate::host::HostRead;

/// A `w × h` PNG whose pixels encode `tag`, so each file can be recognised after loading.
fn png(path: &Path, w: u32, h: u32, tag: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([tag, x as u8, y as u8]));
    img.save_with_format(path, image::ImageFormat::Png).unwrap();
}

fn jpg(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(w, h, image::Rgb([200, 100, 50])).save_with_format(path, image::ImageFormat::Jpeg).unwrap();
}

/// Two classes, written out of order, plus files and folders that must be ignored.
fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    png(&d.join("zebra/b.png"), 4, 3, 30);
    png(&d.join("zebra/a.PNG"), 4, 3, 20);
    jpg(&d.join("apple/x.JPEG"), 4, 3);
    png(&d.join("zebra/c.png"), 4, 3, 40);
    std::fs::write(d.join("zebra/notes.txt"), "ignored").unwrap();
    png(&d.join(".hidden/q.png"), 4, 3, 99);
    std::fs::write(d.join("toplevel.png"), "not a class folder").unwrap();
    t
}

fn red_channel(set: &ImageSet, i: i64) -> u8 {
    set.images.get(i).get(0).get(0).get(0).read_i64() as u8
}

#[test]
fn loads_sorted_classes_and_files() {
    let t = tree();
    let set = load_image_folder(t.path(), None, None).unwrap();
    assert_eq!(set.class_names, vec!["apple", "zebra"]);
    assert_eq!(set.images.size(), vec![4, 3, 4, 3]);
    assert_eq!(crate::host::vec::<i64>(&set.labels).unwrap(), vec![0, 1, 1, 1]);
    // Within "zebra": a.PNG (20), b.png (30), c.png (40), whatever order they were written.
    assert_eq!([red_channel(&set, 1), red_channel(&set, 2), red_channel(&set, 3)], [20, 30, 40]);
    // PNG is lossless: pixel (x=3, y=2) of a.PNG is (20, 3, 2).
    let px = crate::host::vec::<u8>(&set.images.get(1).get(2).get(3)).unwrap();
    assert_eq!(px, vec![20, 3, 2]);
    // The JPEG decodes near its flat colour.
    assert!((red_channel(&set, 0) as i32 - 200).abs() < 8);
}

#[test]
fn many_files_split_across_threads_keep_order() {
    let t = tempfile::tempdir().unwrap();
    for i in 0..9u8 {
        png(&t.path().join(format!("c/{i:02}.png")), 2, 2, i * 10);
    }
    let set = load_image_folder(t.path(), Some(2), None).unwrap();
    let got: Vec<u8> = (0..9).map(|i| red_channel(&set, i)).collect();
    assert_eq!(got, (0..9).map(|i| i * 10).collect::<Vec<u8>>());
}

fn assert_bad(err: anyhow::Error, needle: &str) {
    assert!(is_bad_input(&err), "not bad input: {err:#}");
    assert!(format!("{err:#}").contains(needle), "{err:#} does not name {needle}");
}

#[test]
fn wrong_requested_size_names_the_file() {
    let t = tree();
    let err = load_image_folder(t.path(), Some(32), None).unwrap_err();
    assert_bad(err, "x.JPEG");
}

#[test]
fn mixed_sizes_name_the_first_offender() {
    let t = tree();
    png(&t.path().join("zebra/bb.png"), 5, 3, 1);
    png(&t.path().join("zebra/d.png"), 6, 6, 1);
    let err = load_image_folder(t.path(), None, None).unwrap_err();
    assert_bad(err, "bb.png");
}

#[test]
fn missing_folder_and_empty_class_are_bad_input() {
    let t = tempfile::tempdir().unwrap();
    assert_bad(load_image_folder(&t.path().join("nope"), None, None).unwrap_err(), "nope");
    assert_bad(load_image_folder(t.path(), None, None).unwrap_err(), "no class sub-folders");
    png(&t.path().join("a/1.png"), 2, 2, 0);
    std::fs::create_dir_all(t.path().join("empty")).unwrap();
    std::fs::write(t.path().join("empty/readme.md"), "x").unwrap();
    assert_bad(load_image_folder(t.path(), None, None).unwrap_err(), "empty");
}

#[test]
fn undecodable_image_names_the_file() {
    let t = tree();
    std::fs::write(t.path().join("zebra/broken.png"), b"definitely not a png").unwrap();
    assert_bad(load_image_folder(t.path(), None, None).unwrap_err(), "broken.png");
}

#[test]
fn cache_is_used_and_survives_corruption() {
    let t = tree();
    let cache_dir = tempfile::tempdir().unwrap();
    let first = load_image_folder(t.path(), None, Some(cache_dir.path())).unwrap();
    let entries: Vec<_> = std::fs::read_dir(cache_dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(entries.len(), 1, "exactly one cache entry: {entries:?}");
    let entry = &entries[0];

    // Plant a doctored entry under the same key: getting it back proves the hit path is used.
    let doctored = ImageSet::new(first.images.zeros_like(), first.labels.copy(), first.class_names.clone()).unwrap();
    cache::write(entry, &doctored).unwrap();
    let hit = load_image_folder(t.path(), None, Some(cache_dir.path())).unwrap();
    assert_eq!(hit.images.sum(Kind::Int64).read_i64(), 0);

    // A cached set still obeys the requested size.
    assert_bad(load_image_folder(t.path(), Some(7), Some(cache_dir.path())).unwrap_err(), "x.JPEG");

    // A truncated entry is ignored: the folder is decoded again and the entry rewritten.
    let bytes = std::fs::read(entry).unwrap();
    std::fs::write(entry, &bytes[..bytes.len() / 2]).unwrap();
    let again = load_image_folder(t.path(), None, Some(cache_dir.path())).unwrap();
    assert!(again.images.equal(&first.images));
    assert!(cache::read(entry).unwrap().images.equal(&first.images));

    // Touching the folder's contents changes the key: a new entry appears.
    png(&t.path().join("zebra/e.png"), 4, 3, 50);
    assert_eq!(load_image_folder(t.path(), None, Some(cache_dir.path())).unwrap().len(), 5);
    assert_eq!(std::fs::read_dir(cache_dir.path()).unwrap().count(), 2);
}
