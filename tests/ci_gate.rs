//! The CI loop a user runs, on a clean folder: a recipe run with `--junit` under a GitHub-like
//! step summary, then `compress validate` on the exported student with a gate that holds and
//! one that fails, then the mistakes (no data folder, a file without preprocessing metadata).
//! Every JUnit file is checked against the rules of the common JUnit schema.

mod common;

use common::run_in;
use std::path::Path;

/// Two classes of noise JPEGs of assorted sizes: nothing to learn, so a student's accuracy
/// stays well below 100% and a high threshold must fail.
fn noise_folder(root: &Path, per_class: usize, seed: u64) {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    for class in ["cats", "dogs"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..per_class {
            let (w, h) = (40 + next() % 50, 40 + next() % 50);
            let px: Vec<u8> = (0..w * h * 3).map(|_| next() as u8).collect();
            let img = image::RgbImage::from_raw(w, h, px).unwrap();
            img.save_with_format(root.join(class).join(format!("{i:03}.jpg")), image::ImageFormat::Jpeg).unwrap();
        }
    }
}

const RECIPE: &str = r#"version: 1
name: gate
seed: 1
device: cpu
data:
  format: image_folder
  train: train
  test: test
  image_size: 32
  augment: {random_resized_crop: {}, horizontal_flip: true}
  eval: {resize_shorter: 36, center_crop: 32}
  normalize: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
teachers: []
student: {arch: resnet8, width: 0.5}
distill: {method: none}
train: {epochs: 1, batch_size: 16, threads: 2}
validate:
  gates:
    - {metric: top1_agreement_tch_vs_ort, min: 0.9}
    - {metric: max_rel_diff_tch_vs_ort, max: 1.0e-4}
"#;

/// Checks `xml` against the common JUnit schema's rules (the Ant/Jenkins `JUnit.xsd` most CI
/// reporters read): element nesting and order, required attributes and their types, at most one
/// failure or error per case, and counts that agree with the cases. Returns the document.
fn check_junit(xml: &str) -> roxmltree::Document<'_> {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("not well-formed XML ({e}):\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites", "{xml}");
    let num = |n: roxmltree::Node, a: &str| -> f64 {
        let v = n.attribute(a).unwrap_or_else(|| panic!("<{}> lacks required attribute {a}:\n{xml}", n.tag_name().name()));
        v.parse().unwrap_or_else(|_| panic!("<{}> {a}={v:?} is not a number", n.tag_name().name()))
    };
    let (mut all_tests, mut all_failures, mut all_errors) = (0, 0, 0);
    for suite in elements(root) {
        assert_eq!(suite.tag_name().name(), "testsuite", "{xml}");
        assert!(!suite.attribute("name").unwrap_or("").is_empty(), "testsuite name is required");
        assert!(!suite.attribute("hostname").unwrap_or("").is_empty(), "testsuite hostname is required");
        let ts = suite.attribute("timestamp").expect("testsuite timestamp is required");
        // xs:dateTime without a zone: YYYY-MM-DDTHH:MM:SS.
        assert!(ts.len() == 19 && ts.as_bytes()[10] == b'T' && ts.chars().filter(|c| c.is_ascii_digit()).count() == 14, "timestamp {ts}");
        assert!(num(suite, "time") >= 0.0);
        let kids = elements(suite);
        let names: Vec<&str> = kids.iter().map(|k| k.tag_name().name()).collect();
        // properties, testcase*, system-out, system-err: in that order.
        assert_eq!(names.first(), Some(&"properties"), "{names:?}");
        assert_eq!(&names[names.len() - 2..], ["system-out", "system-err"], "{names:?}");
        assert!(names[1..names.len() - 2].iter().all(|n| *n == "testcase"), "{names:?}");
        for p in elements(kids[0]) {
            assert_eq!(p.tag_name().name(), "property");
            assert!(p.attribute("name").is_some() && p.attribute("value").is_some());
        }
        let cases = &kids[1..kids.len() - 2];
        let (mut failures, mut errors) = (0, 0);
        for case in cases {
            assert!(!case.attribute("name").unwrap_or("").is_empty() && case.attribute("classname").is_some(), "testcase name and classname");
            assert!(num(*case, "time") >= 0.0);
            let outcomes: Vec<_> = elements(*case).into_iter().filter(|k| matches!(k.tag_name().name(), "failure" | "error" | "skipped")).collect();
            assert!(outcomes.len() <= 1, "at most one outcome per case");
            for o in outcomes {
                assert!(o.attribute("message").is_some() && o.attribute("type").is_some(), "failure/error need message and type");
                match o.tag_name().name() {
                    "failure" => failures += 1,
                    "error" => errors += 1,
                    _ => {}
                }
            }
            for k in elements(*case) {
                assert!(matches!(k.tag_name().name(), "failure" | "error" | "skipped" | "system-out" | "system-err"), "unexpected <{}>", k.tag_name().name());
            }
        }
        assert_eq!(num(suite, "tests") as usize, cases.len());
        assert_eq!(num(suite, "failures") as usize, failures);
        assert_eq!(num(suite, "errors") as usize, errors);
        assert_eq!(num(suite, "skipped") as usize, 0);
        all_tests += cases.len();
        all_failures += failures;
        all_errors += errors;
    }
    assert_eq!(num(root, "tests") as usize, all_tests);
    assert_eq!(num(root, "failures") as usize, all_failures);
    assert_eq!(num(root, "errors") as usize, all_errors);
    doc
}

fn elements<'a, 'i>(n: roxmltree::Node<'a, 'i>) -> Vec<roxmltree::Node<'a, 'i>> {
    n.children().filter(|c| c.is_element()).collect()
}

fn cases<'a>(doc: &'a roxmltree::Document<'a>) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants().filter(|n| n.has_tag_name("testcase")).collect()
}

fn validate(dir: &Path, summary: &Path, args: &[&str]) -> common::Run {
    let out = common::bin().arg("validate").args(args).current_dir(dir).env("GITHUB_STEP_SUMMARY", summary).output().unwrap();
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

#[test]
fn run_then_validate_as_a_ci_pipeline_would() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    noise_folder(&dir.join("train"), 24, 1);
    noise_folder(&dir.join("test"), 10, 2);
    std::fs::write(dir.join("gate.yaml"), RECIPE).unwrap();
    let summary = dir.join("summary.md");

    // 1. The run, with JUnit and a step summary.
    let o = common::bin()
        .args(["--recipe", "gate.yaml", "--out", "out", "--junit", "run.xml"])
        .current_dir(dir)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.lines().last().unwrap().starts_with("PASS: ") && stderr.contains("2 gate(s) held"), "{stderr}");
    let xml = std::fs::read_to_string(dir.join("run.xml")).unwrap();
    let doc = check_junit(&xml);
    let names: Vec<&str> = cases(&doc).iter().map(|c| c.attribute("name").unwrap()).collect();
    assert_eq!(names, ["top1_agreement_tch_vs_ort min 0.9000", "max_rel_diff_tch_vs_ort max 1.000e-4"]);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("out/report.json")).unwrap()).unwrap();
    let run_top1 = report["fidelity"]["top1_ort"].as_f64().unwrap();
    assert!(run_top1 < 0.9, "noise cannot be learned: {run_top1}");
    // The accuracy chart is drawn and embedded; no teacher weights without teachers.
    let md = std::fs::read_to_string(dir.join("out/report.md")).unwrap();
    assert!(md.contains("![Test top-1 per epoch](accuracy.png)"), "{md}");
    assert_eq!(image::image_dimensions(dir.join("out/accuracy.png")).unwrap(), (900, 520));
    assert!(!dir.join("out/teacher_weights.png").exists());
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.contains("### ✅ PASS compress --recipe gate.yaml") && text.contains("| max_rel_diff_tch_vs_ort | max |"), "{text}");

    // A run whose gate fails exits 1 and its last line names the gate with value and threshold.
    let o = common::bin()
        .args(["--recipe", "gate.yaml", "--out", "strict", "--set", "validate.gates=[{metric: top1, min: 0.99}]", "--junit", "strict.xml"])
        .current_dir(dir)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("FAIL: ") && last.contains(&format!("failed gate(s): top1 {run_top1:.4} is below the minimum 0.9900 (min)")), "{stderr}");
    let xml = std::fs::read_to_string(dir.join("strict.xml")).unwrap();
    assert!(xml.contains(r#"failures="1" errors="0""#), "{xml}");
    check_junit(&xml);

    // 2. validate reads the student's preprocessing and view from its metadata: the same
    //    top-1 as the run measured, with no flag.
    let r = validate(dir, &summary, &["out/student.onnx", "--data", "test", "--min-top1", "0.0", "--junit", "pass.xml", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["top1"].as_f64().unwrap(), run_top1, "validate sees what the run saw");
    assert_eq!(v["input"]["from"], "the file's metadata");
    assert_eq!(v["input"]["view"]["resize_shorter"], 36);
    assert!(r.stderr.lines().last().unwrap().starts_with("PASS: 1 gate(s) held"), "{}", r.stderr);
    let xml = std::fs::read_to_string(dir.join("pass.xml")).unwrap();
    assert!(xml.contains(r#"failures="0" errors="0""#), "{xml}");
    check_junit(&xml);
    // eval reads the metadata too.
    let e = run_in(dir, &["eval", "out/student.onnx", "--data", "test", "--json"]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&e.stdout).unwrap()["top1"].as_f64().unwrap(), run_top1);

    // 3. A threshold above what it reaches fails: exit 1, the gate named with value and
    //    threshold in the final line, a <failure> in JUnit, FAIL in the summary. A reference
    //    drop gate against itself holds.
    let r = validate(
        dir,
        &summary,
        &["out/student.onnx", "--data", "test", "--min-top1", "0.99", "--max-drop-vs", "out/student.onnx", "0.0", "--junit", "fail.xml"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let expected = format!("FAIL: top1 {run_top1:.4} is below the minimum 0.9900 (min)");
    assert_eq!(r.stderr.lines().last().unwrap(), expected, "{}", r.stderr);
    let xml = std::fs::read_to_string(dir.join("fail.xml")).unwrap();
    let doc = check_junit(&xml);
    let c = cases(&doc);
    assert_eq!(c.len(), 2);
    let failure = c[0].children().find(|n| n.has_tag_name("failure")).expect("the min gate is a failure");
    assert_eq!(failure.attribute("message").unwrap(), &expected["FAIL: ".len()..]);
    assert!(c[1].children().all(|n| !n.has_tag_name("failure")), "the drop gate against itself holds");
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.contains("### ❌ FAIL compress validate out/student.onnx") && text.contains("**FAIL**"), "{text}");

    // 4. Mistakes: exit 2 with an <error> case, not a failure.
    let r = validate(dir, &summary, &["out/student.onnx", "--data", "nowhere", "--min-top1", "0.5", "--junit", "err.xml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--data: folder nowhere does not exist"), "{}", r.stderr);
    let xml = std::fs::read_to_string(dir.join("err.xml")).unwrap();
    let doc = check_junit(&xml);
    let error = cases(&doc)[0].children().find(|n| n.has_tag_name("error")).expect("bad input is an error");
    assert_eq!(error.attribute("type"), Some("bad_input"));
    assert!(std::fs::read_to_string(&summary).unwrap().contains("### ⚠️ ERROR compress validate"));
    // A threshold given as a percentage.
    let r = validate(dir, &summary, &["out/student.onnx", "--data", "test", "--min-top1", "75"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--min-top1 is a fraction between 0 and 1 (0.75 for 75%), got 75"), "{}", r.stderr);
    // A file with no preprocessing metadata and no flags: the flags to give are named.
    let teacher = common::shared().join("onnx/vnncomp21_cifar10_resnet_4b.onnx");
    let r = validate(dir, &summary, &[teacher.to_str().unwrap(), "--data", "test"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("records no preprocessing") && r.stderr.contains("give --mean R,G,B and --std R,G,B"), "{}", r.stderr);
    // Class folders that are not the ones the model was trained on.
    std::fs::create_dir_all(dir.join("other/birds")).unwrap();
    std::fs::create_dir_all(dir.join("other/cats")).unwrap();
    std::fs::copy(dir.join("test/cats/000.jpg"), dir.join("other/birds/000.jpg")).unwrap();
    std::fs::copy(dir.join("test/cats/001.jpg"), dir.join("other/cats/001.jpg")).unwrap();
    let r = validate(dir, &summary, &["out/student.onnx", "--data", "other"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("are not the classes the model was trained on (cats, dogs)"), "{}", r.stderr);
}

#[test]
fn a_run_that_stops_on_bad_input_writes_an_error_case() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("bad.yaml"), RECIPE.replace("epochs: 1", "epochs: 0")).unwrap();
    let r = run_in(t.path(), &["--recipe", "bad.yaml", "--junit", "run.xml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let xml = std::fs::read_to_string(t.path().join("run.xml")).unwrap();
    let doc = check_junit(&xml);
    let error = cases(&doc)[0].children().find(|n| n.has_tag_name("error")).expect("an error case");
    assert_eq!(error.attribute("type"), Some("bad_input"));
    assert!(error.attribute("message").unwrap().contains("epochs"), "{xml}");
}
