//! The binary links libtorch's CUDA backend even though nothing references it by symbol, so
//! `device: auto` finds a GPU where one is present (the `--as-needed` trap, design.md §4).

#[test]
fn binary_needs_libtorch_cuda_when_the_wheel_has_it() {
    let ldd = std::process::Command::new("ldd").arg(env!("CARGO_BIN_EXE_compress")).output().expect("ldd runs");
    let text = String::from_utf8_lossy(&ldd.stdout);
    let has_cuda_build = text.lines().any(|l| {
        l.contains("libtorch_cpu.so") && {
            let path = l.split("=>").nth(1).unwrap_or("").split_whitespace().next().unwrap_or("");
            std::path::Path::new(path).with_file_name("libtorch_cuda.so").exists()
        }
    });
    assert!(text.contains("libtorch_cpu.so"), "libtorch must resolve through the rpath, without LD_LIBRARY_PATH:\n{text}");
    assert!(!text.contains("not found"), "every library must resolve:\n{text}");
    if has_cuda_build {
        assert!(text.contains("libtorch_cuda.so"), "libtorch_cuda.so was dropped by --as-needed:\n{text}");
    } else {
        eprintln!("this libtorch is a CPU-only build: there is no CUDA backend to keep");
    }
}
