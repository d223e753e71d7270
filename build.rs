//! Link-time set-up for the `compress` binary and its tests.
//!
//! tch's own build script links libtorch with `--no-as-needed` and an rpath only for tch's own
//! targets; a downstream binary must do it itself, or `libtorch_cuda.so` is dropped by
//! `--as-needed` and CUDA silently reports unavailable (runtime-notes §2.1). We also record where
//! the project's ONNX Runtime library lies, so the binary finds it without environment variables.
//! And we compile the C++ shim of `src/dist/` against the torch wheel's c10d headers (Gloo's own
//! headers, which the wheel lacks, come from Debian's `libgloo-dev`, unpacked by `scripts/setup`).

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=COMPRESS_VENV");
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        let lib = lib.to_string_lossy();
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-env=COMPRESS_LIBTORCH_LIB={lib}");
        // The wheel's version.py sits beside `lib`: `__version__ = '2.11.0+cu130'`, `cuda = '13.0'`.
        let version_py = std::path::Path::new(&*lib).join("../version.py");
        let text = std::fs::read_to_string(version_py).unwrap_or_default();
        println!("cargo:rustc-env=COMPRESS_LIBTORCH_VERSION={}", py_string(&text, "__version__"));
        println!("cargo:rustc-env=COMPRESS_LIBTORCH_CUDA={}", py_string(&text, "cuda"));
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    build_dist_shim();

    let venv = std::env::var_os("COMPRESS_VENV").map(PathBuf::from).unwrap_or_else(|| Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join(".venv"));
    let ort = find_ort_dylib(&venv).map(|p| p.display().to_string()).unwrap_or_default();
    println!("cargo:rustc-env=COMPRESS_DEFAULT_ORT_DYLIB={ort}");
}

/// Compiles `src/dist/shim.cpp` (TCPStore rendezvous, Gloo process group) into a static library
/// linked into the crate. Without Gloo's headers it is built without the Gloo group, whose
/// constructor then says so; `COMPRESS_GLOO_INCLUDE` names another folder holding `gloo/`.
/// `src/dist/shim_nccl.cpp` (the NCCL group) joins it where the wheel is a CUDA build and the
/// CUDA headers are installed beside it (the nvidia-cuda-crt and nvidia-cuda-cccl wheels).
fn build_dist_shim() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    for file in ["shim.cpp", "shim_nccl.cpp", "shim_common.hpp"] {
        println!("cargo:rerun-if-changed=src/dist/{file}");
    }
    println!("cargo:rerun-if-env-changed=COMPRESS_GLOO_INCLUDE");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        panic!("tch's build script did not say where libtorch is (DEP_TCH_LIBTORCH_LIB)");
    };
    let include = lib.join("../include");
    let gloo = std::env::var_os("COMPRESS_GLOO_INCLUDE").map(PathBuf::from).unwrap_or_else(|| manifest.join(".deps/gloo/usr/include"));
    println!("cargo:rerun-if-changed={}", gloo.join("gloo/config.h").display());
    let with_gloo = gloo.join("gloo/config.h").is_file();
    if !with_gloo {
        println!("cargo:warning=gloo headers not found in {}: the Gloo process group is left out (run ./scripts/setup)", gloo.display());
    }
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file(manifest.join("src/dist/shim.cpp"))
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false);
    if with_gloo {
        build.include(&gloo).define("USE_C10D_GLOO", None).define("COMPRESS_WITH_GLOO", None);
    }
    // The CUDA headers of the wheel's CUDA version lie in site-packages/nvidia (torch/lib's
    // grandparent's sibling); NCCL's beside them.
    let nvidia = lib.join("../../nvidia");
    let cuda_include = nvidia.join("cu13/include");
    let nccl_include = nvidia.join("nccl/include");
    println!("cargo:rerun-if-changed={}", cuda_include.join("crt").display());
    let with_nccl = lib.join("libtorch_cuda.so").is_file()
        && cuda_include.join("crt/host_config.h").is_file()
        && cuda_include.join("cuda_runtime_api.h").is_file()
        && nccl_include.join("nccl.h").is_file();
    if with_nccl {
        build
            .file(manifest.join("src/dist/shim_nccl.cpp"))
            .include(&cuda_include)
            .include(cuda_include.join("cccl"))
            .include(&nccl_include)
            .define("USE_C10D_NCCL", None)
            .define("COMPRESS_WITH_NCCL", None);
    } else {
        println!("cargo:warning=no CUDA build of libtorch with CUDA headers beside it: the NCCL process group is left out");
    }
    build.compile("compress_dist");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    if with_nccl {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
}

/// The versioned `libonnxruntime.so.1.x.y` inside the virtual environment's onnxruntime wheel.
fn find_ort_dylib(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    for python in std::fs::read_dir(&lib).ok()?.flatten() {
        let capi = python.path().join("site-packages/onnxruntime/capi");
        let Ok(entries) = std::fs::read_dir(&capi) else { continue };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so.1")))
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            println!("cargo:rerun-if-changed={}", capi.display());
            return Some(p);
        }
    }
    None
}

/// The quoted value of `name = '...'` in a Python file, or "unknown".
fn py_string(text: &str, name: &str) -> String {
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| rest.split_once('=').map(|(_, v)| v.trim().trim_matches(|c| c == '\'' || c == '"').to_string()))
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
