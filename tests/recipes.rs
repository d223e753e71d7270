//! Every recipe shipped in `recipes/` (the default one, the real-teacher ones, one per method)
//! passes the plan: keys, files, teachers, taps, connectors. `--dry-run` stops before training.

mod common;
use common::*;

fn recipes_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            found.extend(recipes_in(&p));
        } else if p.extension().is_some_and(|e| e == "yaml") {
            found.push(p);
        }
    }
    found.sort();
    found
}

#[test]
fn every_shipped_recipe_plans() {
    let _ = shared(); // the real-data recipes read ../shared
    let recipes = recipes_in(&repo().join("recipes"));
    let methods: Vec<String> =
        recipes.iter().filter(|p| p.parent().unwrap().ends_with("methods")).map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    for m in compress::distill::methods::names().into_iter().filter(|m| *m != "none") {
        assert!(methods.iter().any(|r| r == m), "recipes/methods/ has no recipe for `{m}`");
    }
    let dir = tempfile::tempdir().unwrap();
    // The bring-your-own recipe's student is written by scripts/make-byo-student (it needs
    // torchvision); until then its one problem must be that file.
    // Likewise the low-bit quantization recipe quantizes the float student that
    // recipes/quantize/resnet20_w8a8.yaml writes into out/.
    // And the photo recipe reads the folder scripts/make-photo-folder writes into out/.
    let generated = [
        (".cache/byo/mobilenet_v2.onnx", "mobilenet_v2.onnx"),
        ("out/quantize_resnet20_w8a8/student.onnx", "quantize_resnet20_w8a8/student.onnx"),
        ("out/photo-folder/train", "photo-folder/train"),
        ("out/photo-folder/test", "photo-folder/test"),
    ];
    for recipe in &recipes {
        let r = run_in(dir.path(), &["--recipe", recipe.to_str().unwrap(), "--dry-run", "--device", "cpu"]);
        let text = std::fs::read_to_string(recipe).unwrap();
        let missing: Vec<&str> = generated.iter().filter(|(path, file)| text.contains(*file) && !repo().join(path).exists()).map(|(_, file)| *file).collect();
        if !missing.is_empty() {
            assert_eq!(r.code, 2, "{}: {}", recipe.display(), r.stderr);
            assert!(r.stderr.contains(&format!("{} problem(s)", missing.len())), "{}: {}", recipe.display(), r.stderr);
            for file in missing {
                assert!(r.stderr.contains(&format!("{file} does not exist")), "{}: {}", recipe.display(), r.stderr);
            }
            continue;
        }
        assert_eq!(r.code, 0, "{}: {}", recipe.display(), r.stderr);
    }
}

/// The papers' protocol recipe plans as the papers train: 240 epochs of batch 64, ResNet-20, the
/// full training set, and every method of the CPU comparison.
#[test]
fn the_papers_protocol_comparison_plans() {
    let _ = shared();
    let dir = tempfile::tempdir().unwrap();
    let paper = repo().join("recipes/compare/cifar10_methods_paper.yaml");
    let r = run_in(dir.path(), &["--recipe", paper.to_str().unwrap(), "--dry-run", "--device", "cpu"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan = format!("{}{}", r.stdout, r.stderr);
    assert!(plan.contains("student resnet20 (width 1)") && plan.contains("240 epochs, batch 64"), "{plan}");
    let text = std::fs::read_to_string(&paper).unwrap();
    assert!(text.contains("milestones: [150, 180, 210]") && text.contains("lr: 0.05") && !text.contains("train_subset"), "{text}");
    let cpu = std::fs::read_to_string(repo().join("recipes/compare/cifar10_methods.yaml")).unwrap();
    let methods = |t: &str| t.lines().filter(|l| l.trim_start().starts_with("- {") && l.contains("distill:")).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(methods(&text), methods(&cpu).iter().map(|l| l.replace("head_epochs: 20", "head_epochs: 60")).collect::<Vec<_>>());
}

/// The keys and example values of docs/recipe.md's table, checked against the schema: every
/// key exists, and every default written as a value (`{random_crop_padding: 4, …}`, `1/255`)
/// parses where the table puts it.
#[test]
fn the_recipe_reference_agrees_with_the_schema() {
    let doc = std::fs::read_to_string(repo().join("docs/recipe.md")).unwrap();
    let base = "version: 1\nname: docs\ndata:\n  format: synthetic\n  synthetic: {num_classes: 10, train_size: 8, test_size: 8, seed: 1}\n  normalize: {mean: [0, 0, 0], std: [1, 1, 1]}\nteachers:\n  - {name: t, onnx: t.onnx}\nstudent: {arch: resnet8}\ntrain: {epochs: 1}\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("base.yaml");
    std::fs::write(&path, base).unwrap();
    let ticked = |cell: &str| -> Vec<String> { cell.split('`').skip(1).step_by(2).map(String::from).collect() };
    let (mut keys, mut literals) = (0, 0);
    for row in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (key_cell, default_cell) = (cells[1], cells[2]);
        let default = ticked(default_cell);
        // A default that is one value in backticks, not a reference to another key.
        let literal =
            (default.len() == 1 && default_cell.starts_with('`') && default_cell.ends_with('`') && !default[0].contains(" / ")).then(|| default[0].clone());
        for key in ticked(key_cell) {
            let set_key = key.replace("[]", ".0");
            let value = literal.clone().unwrap_or_else(|| "null".into());
            let result = compress::recipe::parse(&path, &[format!("{set_key}={value}")]);
            keys += 1;
            match (&literal, result) {
                (Some(v), Err(e)) => panic!("docs/recipe.md: `{key}` with its documented default `{v}` is refused: {e:#}"),
                (Some(_), Ok(_)) => literals += 1,
                (None, Err(e)) => assert!(!format!("{e:#}").contains("unknown field"), "docs/recipe.md names `{key}`, which the schema lacks: {e:#}"),
                (None, Ok(_)) => {}
            }
        }
    }
    assert!(keys > 50 && literals > 25, "the table was read: {keys} keys, {literals} literal defaults");
}
