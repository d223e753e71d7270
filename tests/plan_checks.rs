//! Mistakes the files already reveal, caught before training with the fix in the message (exit
//! 2), and the ones only the measured teachers reveal, warned about: a wrong layout for a
//! channels-last teacher, a softmax output declared as logits, bad images found by `--dry-run`,
//! a teacher near chance because of its normalisation.

mod common;
use common::*;

fn recipe(teachers: &str, extra_data: &str) -> String {
    let shared = shared();
    let data = shared.join("data/cifar10");
    format!(
        r#"version: 1
name: checks
seed: 2
device: cpu
data:
  format: image_folder
  train: {train}
  test: {test}
  train_subset: 64
  test_subset: 300
  {extra_data}
  normalize: {{scale: 1/255, mean: [0.4914, 0.4822, 0.4465], std: [0.2471, 0.2435, 0.2616]}}
teachers: {teachers}
student: {{arch: resnet8, width: 0.5}}
distill: {{method: aver}}
train: {{epochs: 1, batch_size: 32, threads: 2}}
"#,
        train = data.join("train").display(),
        test = data.join("test").display(),
    )
}

fn teacher(name: &str, file: &str, input: &str, output: &str) -> String {
    format!("{{name: {name}, onnx: {}, input: {input}, output: {output}}}", shared().join("onnx").join(file).display())
}

const SQUEEZENET: &str = "emclab_squeezenet_cifar10_tf2onnx.onnx";

#[test]
fn a_channels_last_teacher_declared_nchw_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let t = teacher("squeeze", SQUEEZENET, "{layout: nchw, scale: 1/256}", "probabilities");
    std::fs::write(dir.path().join("r.yaml"), recipe(&format!("[{t}]"), "")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--dry-run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("teachers[0] (squeeze)") && r.stderr.contains("declared [unk__84, 32, 32, 3], which is channels last (NHWC)"), "{}", r.stderr);
    assert!(r.stderr.contains("use `layout: nhwc`"), "{}", r.stderr);
    assert!(!r.stderr.contains("frame #"), "no libtorch stack trace: {}", r.stderr);
}

#[test]
fn a_softmax_output_declared_as_logits_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let t = teacher("squeeze", SQUEEZENET, "{layout: nhwc, scale: 1/256}", "logits");
    std::fs::write(dir.path().join("r.yaml"), recipe(&format!("[{t}]"), "")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--dry-run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("computed by the Softmax node `squeezenet/loss/Softmax`") && r.stderr.contains("set `output: probabilities`"), "{}", r.stderr);
    // Declared as what it is, the same teacher plans.
    let t = teacher("squeeze", SQUEEZENET, "{layout: nhwc, scale: 1/256}", "probabilities");
    std::fs::write(dir.path().join("ok.yaml"), recipe(&format!("[{t}]"), "")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "ok.yaml", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn dry_run_reads_every_image_header() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of a few real classes with one truncated JPEG.
    let (train, test) = (dir.path().join("train"), dir.path().join("test"));
    for (root, n) in [(&train, 6), (&test, 3)] {
        for class in ["cat", "dog"] {
            std::fs::create_dir_all(root.join(class)).unwrap();
            let src = shared().join("data/cifar10/test").join(class);
            let mut files: Vec<_> = std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            for f in files.iter().take(n) {
                std::fs::copy(f, root.join(class).join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    let text = "version: 1\nname: dry\ndevice: cpu\ndata:\n  format: image_folder\n  train: train\n  test: test\n  image_size: 64\n  normalize: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}\nteachers: []\nstudent: {arch: resnet8}\ntrain: {epochs: 1}\n";
    std::fs::write(dir.path().join("r.yaml"), text).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("data: data.train: 12 images in 2 classes, 32x32 to 32x32 pixels (width x height); 12 have a side under the largest model input 64 and are upscaled"), "{}", r.stderr);
    let victim = std::fs::read_dir(train.join("dog")).unwrap().next().unwrap().unwrap().path();
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml", "--dry-run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(victim.file_name().unwrap().to_str().unwrap()) && r.stderr.contains("truncated"), "{}", r.stderr);
}

#[test]
fn a_teacher_near_chance_is_warned_about_with_the_likely_causes() {
    let _serial = one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let good = teacher("resnet4b", "vnncomp21_cifar10_resnet_4b.onnx", "{mean: [0.4914, 0.4822, 0.4465], std: [0.2471, 0.2435, 0.2616]}", "logits");
    // The biasfield CNN fed raw [0, 1] pixels instead of its normalisation (28% on the full set).
    let raw = teacher("biasfield_raw", "vnncomp22_cifar_biasfield_base.onnx", "{}", "logits");
    std::fs::write(dir.path().join("r.yaml"), recipe(&format!("[{good}, {raw}]"), "")).unwrap();
    let r = run_in(dir.path(), &["--recipe", "r.yaml"]);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    let warning = r.stderr.lines().find(|l| l.starts_with("warning: teacher `biasfield_raw`")).unwrap_or_else(|| panic!("no warning:\n{}", r.stderr));
    assert!(warning.contains("under half of the best teacher's") && warning.contains("input.mean/input.std"), "{warning}");
    assert!(!r.stderr.contains("warning: teacher `resnet4b`"), "{}", r.stderr);
}
