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
    let generated = [(".cache/byo/mobilenet_v2.onnx", "mobilenet_v2.onnx"), ("out/quantize_resnet20_w8a8/student.onnx", "quantize_resnet20_w8a8/student.onnx")];
    for recipe in &recipes {
        let r = run_in(dir.path(), &["--recipe", recipe.to_str().unwrap(), "--dry-run", "--device", "cpu"]);
        let text = std::fs::read_to_string(recipe).unwrap();
        if let Some((_, file)) = generated.iter().find(|(path, file)| text.contains(*file) && !repo().join(path).exists()) {
            assert_eq!(r.code, 2, "{}: {}", recipe.display(), r.stderr);
            assert!(r.stderr.contains("1 problem(s)") && r.stderr.contains(&format!("{file} does not exist")), "{}: {}", recipe.display(), r.stderr);
            continue;
        }
        assert_eq!(r.code, 0, "{}: {}", recipe.display(), r.stderr);
    }
}
