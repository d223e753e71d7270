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
