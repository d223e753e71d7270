//! The five real third-party teachers in ../shared/onnx: our import matches ONNX Runtime
//! (`inspect --verify`) at batch 1 and batch 4; fixed-batch models run batched after relaxation.

mod common;
use common::*;

const MODELS: &[&str] = &[
    "vnncomp21_cifar10_resnet_4b.onnx",
    "vnncomp22_sri_resnet_a.onnx",
    "vnncomp22_cifar_biasfield_base.onnx",
    "emclab_squeezenet_cifar10_tf2onnx.onnx",
    "vnncomp23_vit_pgd_2_3_16.onnx",
];

#[test]
fn inspect_verify_matches_onnx_runtime_for_every_shared_teacher() {
    let onnx = shared().join("onnx");
    for m in MODELS {
        let path = onnx.join(m);
        let r = run_in(&repo(), &["inspect", path.to_str().unwrap(), "--verify", "--json"]);
        assert_eq!(r.code, 0, "{m}: {}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert!(v["unsupported"].as_array().unwrap().is_empty(), "{m}: {}", v["unsupported"]);
        let runs = v["verify"]["runs"].as_array().unwrap();
        assert_eq!(runs.iter().map(|r| r["batch"].as_i64().unwrap()).collect::<Vec<_>>(), vec![1, 4], "{m}");
        assert!(v["verify"]["execution"].as_str().unwrap().starts_with("batched"), "{m}: {}", v["verify"]);
        for run in runs {
            for o in run["outputs"].as_array().unwrap() {
                let rel = o["max_rel_diff"].as_f64().unwrap();
                assert!(rel <= 1e-4, "{m}: batch {} output {} max_rel_diff {rel}", run["batch"], o["output"]);
                assert!(o["reference_max_abs"].as_f64().unwrap() > 0.0, "{m}: degenerate reference");
            }
        }
    }
}
