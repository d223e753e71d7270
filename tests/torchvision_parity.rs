//! The ImageNet-style zoo equals torchvision: parameter counts, and logits with torchvision's
//! weights loaded by name. Needs the .npz files written by `scripts/check-zoo-torchvision`
//! (torchvision is not part of the test environment), hence ignored in the default suite.

use compress::graph::{Executor, RunMode};
use compress::host::HostRead;
use compress::zoo::ArchSpec;
use tch::{Device, Tensor};

fn check(arch: &str, dir: &std::path::Path) {
    let arrays: std::collections::HashMap<String, Tensor> = Tensor::read_npz(dir.join(format!("{arch}.npz"))).unwrap().into_iter().collect();
    let spec = ArchSpec { num_classes: 10, width: 1.0, image_size: 64 };
    let mut graph = compress::zoo::build(arch, &spec, Device::Cpu).unwrap();
    let want_params = arrays["__param_count__"].view([-1]).get(0).read_i64();
    assert_eq!(graph.parameter_count(), want_params, "{arch}: parameter count");
    let state = graph.non_parameter_initializers();
    let mut loaded = 0;
    for (name, t) in graph.initializers.iter_mut() {
        if state.contains(name) && !name.ends_with("running_mean") && !name.ends_with("running_var") {
            continue; // Clip bounds: constants of the graph, not weights
        }
        let src = arrays.get(name.as_str()).unwrap_or_else(|| panic!("{arch}: torchvision has no `{name}`"));
        assert_eq!(src.size(), t.size(), "{arch}: `{name}` shape");
        *t = src.to_kind(t.kind());
        loaded += 1;
    }
    let expected = arrays.keys().filter(|k| !k.starts_with("__")).count();
    assert_eq!(loaded, expected, "{arch}: every torchvision tensor is used");
    let exec = Executor::compile(&graph, &[graph.outputs[0].name.clone()], Device::Cpu).unwrap();
    let ours = tch::no_grad(|| exec.run(&[&arrays["__input__"]], RunMode::Eval)).unwrap().remove(0);
    let rel = compress::metrics::max_rel_diff(&ours, &arrays["__logits__"]);
    println!("{arch}: {want_params} parameters, {loaded} tensors loaded, logits max_rel_diff {rel:.2e}");
    assert!(rel <= 1e-5, "{arch}: max_rel_diff {rel}");
}

#[test]
#[ignore = "needs the .npz files of scripts/check-zoo-torchvision"]
fn imagenet_zoo_matches_torchvision() {
    let dir = std::path::PathBuf::from(std::env::var("COMPRESS_ZOO_CHECK_DIR").expect("set by scripts/check-zoo-torchvision"));
    for arch in ["resnet18", "resnet34", "mobilenetv2_imagenet", "mobilenetv3_small", "mobilenetv3_large"] {
        check(arch, &dir);
    }
}
