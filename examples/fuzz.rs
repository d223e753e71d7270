//! A mutation fuzzer on stable Rust for the two parsers users feed by hand: the ONNX reader and
//! graph compiler (parse, import, compile, one run on a small probe input, as `compress
//! inspect` does) and the recipe parser with the plan's checks (`compress --dry-run`).
//!
//! Seeds are files given on the command line (the shared teachers, the repository's recipes,
//! small generated models); each execution mutates one (byte flips, interesting integers, cuts,
//! splices of two seeds, for recipes also line and token edits) and runs the target in-process.
//! A panic or a failure that is not marked as bad input (it would be exit 3 in the binary) is a
//! finding: its input is saved under `--out`. A watchdog saves the input and aborts when one
//! execution runs past `--timeout` seconds; the input being run is always on disk as `current`,
//! so an abort inside libtorch leaves it too. `scripts/fuzz` runs both targets for a bounded
//! time.
//!
//! `cargo run --release --example fuzz -- onnx|recipe --out DIR [--execs N] [--seconds S]
//! [--timeout S] [--seed N] [--emit N] SEED_FILE...`

use compress::graph::{Dim, Executor, Graph, RunMode};
use compress::pipeline::plan::Plan;
use onnx_protobuf::{Message, ModelProto};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most values a probe input may have here (the fuzzer wants many short executions).
const MAX_PROBE_VALUES: i64 = 1 << 16;

struct Args {
    target: String,
    out: PathBuf,
    execs: u64,
    seconds: u64,
    timeout: u64,
    seed: u64,
    /// Write this many mutated inputs into `out` instead of running them (for probing the
    /// binary itself: `scripts/mutation-probe`).
    emit: Option<u64>,
    seeds: Vec<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let target = it.next().ok_or("usage: fuzz onnx|recipe --out DIR [--execs N] [--seconds S] [--timeout S] [--seed N] SEED...")?;
    let mut a = Args { target, out: PathBuf::from("fuzz-out"), execs: u64::MAX, seconds: 60, timeout: 10, seed: 1, emit: None, seeds: vec![] };
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--out" => a.out = PathBuf::from(value()?),
            "--execs" => a.execs = value()?.parse().map_err(|e| format!("--execs: {e}"))?,
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--timeout" => a.timeout = value()?.parse().map_err(|e| format!("--timeout: {e}"))?,
            "--seed" => a.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--emit" => a.emit = Some(value()?.parse().map_err(|e| format!("--emit: {e}"))?),
            _ => a.seeds.push(PathBuf::from(arg)),
        }
    }
    if !matches!(a.target.as_str(), "onnx" | "recipe") || a.seeds.is_empty() {
        return Err("give the target (onnx or recipe) and at least one seed file".into());
    }
    Ok(a)
}

/// xorshift64*: the fuzzer's own generator (reproducible from `--seed`).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte-level mutations shared by both targets.
fn mutate_bytes(input: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        if input.is_empty() {
            input.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(input.len());
        match rng.below(7) {
            0 => input[at] ^= 1 << rng.below(8),
            1 => input[at] = rng.next() as u8,
            2 => {
                // An interesting integer, little endian.
                let v: [u8; 8] = [0u64, 1, 0x7f, 0xff, 0x8000_0000, u64::MAX, i64::MAX as u64, 0x7fff_ffff][rng.below(8)].to_le_bytes();
                let n = [1, 2, 4, 8][rng.below(4)].min(input.len() - at);
                input[at..at + n].copy_from_slice(&v[..n]);
            }
            3 => {
                let end = (at + 1 + rng.below(64)).min(input.len());
                input.drain(at..end);
            }
            4 => {
                let n = rng.below(16) + 1;
                let chunk: Vec<u8> = input[at..(at + n).min(input.len())].to_vec();
                input.splice(at..at, chunk);
            }
            5 if !other.is_empty() => {
                // Splice a run of another seed.
                let from = rng.below(other.len());
                let n = (rng.below(256) + 1).min(other.len() - from);
                let end = (at + n).min(input.len());
                input.splice(at..end, other[from..from + n].iter().copied());
            }
            _ => input.truncate(at.max(1)),
        }
    }
}

/// Line and token mutations for YAML recipes: extreme or ill-typed values, dropped or doubled
/// lines, deep nesting.
fn mutate_recipe(input: &mut Vec<u8>, rng: &mut Rng) {
    let text = String::from_utf8_lossy(input).into_owned();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    if lines.is_empty() {
        return;
    }
    let at = rng.below(lines.len());
    const VALUES: &[&str] = &[
        ".nan",
        ".inf",
        "-.inf",
        "-1",
        "0",
        "1e9",
        "1e300",
        "18446744073709551615",
        "-9223372036854775808",
        "\"x\"",
        "[]",
        "{}",
        "~",
        "true",
        "../../x",
        "/dev/zero",
        "*a",
        "&a [1]",
    ];
    match rng.below(5) {
        0 => {
            // Replace a value after a colon.
            if let Some(c) = lines[at].find(": ") {
                let v = VALUES[rng.below(VALUES.len())];
                lines[at] = format!("{}: {v}", &lines[at][..c]);
            }
        }
        1 => {
            lines.remove(at);
        }
        2 => {
            let l = lines[at].clone();
            lines.insert(at, l);
        }
        3 => {
            let depth = rng.below(100);
            lines.insert(at, format!("deep: {}1{}", "[".repeat(depth), "]".repeat(depth)));
        }
        _ => {
            // Change a number in place.
            let l = &lines[at];
            if let Some(p) = l.find(|c: char| c.is_ascii_digit()) {
                let v = VALUES[rng.below(8)];
                lines[at] = format!("{}{v}", &l[..p]);
            }
        }
    }
    *input = (lines.join("\n") + "\n").into_bytes();
}

/// The ONNX target: what `compress inspect` does with a file, on the CPU.
fn onnx_target(bytes: &[u8]) -> anyhow::Result<()> {
    let model = ModelProto::parse_from_bytes(bytes).map_err(|e| compress::bad_input!("not a valid ONNX model: {e}"))?;
    let graph = Graph::from_model(&model, "fuzz input")?;
    let names: Vec<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
    let exec = Executor::compile(&graph, &names, tch::Device::Cpu)?;
    let Some(input) = graph.inputs.first() else { return Ok(()) };
    let shape: Vec<i64> = input.dims.iter().map(|d| if let Dim::Fixed(v) = d { *v } else { 1 }).collect();
    let values = shape.iter().try_fold(1i64, |n, &d| if d < 0 { None } else { n.checked_mul(d) });
    if values.is_none_or(|v| v > MAX_PROBE_VALUES) {
        return Ok(());
    }
    let x = tch::Tensor::zeros(shape.as_slice(), (tch::Kind::Float, tch::Device::Cpu));
    tch::no_grad(|| exec.run(&[&x], RunMode::Eval)).map(|_| ())
}

/// The recipe target: the plan of `compress --dry-run` on the CPU, from a file in `dir`.
fn recipe_target(bytes: &[u8], dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("recipe.yaml");
    std::fs::write(&path, bytes)?;
    Plan::resolve(&path, &[], Some("cpu")).map(|_| ())
}

/// How one execution ended.
fn classify(result: std::thread::Result<anyhow::Result<()>>) -> &'static str {
    match result {
        Err(_) => "panic",
        Ok(Ok(())) => "ok",
        Ok(Err(e)) if compress::error::is_bad_input(&e) => "bad input",
        Ok(Err(_)) => "other error",
    }
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&a.out).expect("the output folder");
    std::panic::set_hook(Box::new(|_| {}));
    tch::set_num_threads(1);
    let seeds: Vec<Vec<u8>> = a.seeds.iter().map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("seed {}: {e}", p.display()))).collect();
    let work = tempfile::tempdir().expect("a work folder");
    let current = a.out.join("current");
    let started_exec = Arc::new(AtomicU64::new(0));
    let clock = Instant::now();
    watchdog(clock, started_exec.clone(), a.timeout, current.clone(), a.out.clone());
    let mut rng = Rng(a.seed.max(1));
    if let Some(n) = a.emit {
        let ext = if a.target == "onnx" { "onnx" } else { "yaml" };
        for i in 0..n {
            let input = mutant(&a, &seeds, &mut rng);
            std::fs::write(a.out.join(format!("{i:06}.{ext}")), input).expect("writing a mutant");
        }
        return;
    }
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut execs = 0u64;
    let mut slowest = Duration::ZERO;
    while execs < a.execs && clock.elapsed().as_secs() < a.seconds {
        let input = mutant(&a, &seeds, &mut rng);
        std::fs::write(&current, &input).expect("writing the current input");
        let t0 = Instant::now();
        started_exec.store(clock.elapsed().as_millis() as u64 + 1, Ordering::SeqCst);
        let result = std::panic::catch_unwind(|| if a.target == "onnx" { onnx_target(&input) } else { recipe_target(&input, work.path()) });
        started_exec.store(0, Ordering::SeqCst);
        slowest = slowest.max(t0.elapsed());
        let kind = classify(result);
        *counts.entry(kind).or_default() += 1;
        if matches!(kind, "panic" | "other error") {
            let name = format!("{}-{execs}", kind.replace(' ', "_"));
            let _ = std::fs::write(a.out.join(name), &input);
        }
        execs += 1;
        if execs.is_power_of_two() || execs.is_multiple_of(100_000) {
            eprintln!("{} {execs} executions in {:.0} s: {counts:?}", a.target, clock.elapsed().as_secs_f64());
        }
    }
    let rate = execs as f64 / clock.elapsed().as_secs_f64();
    println!(
        "{} target: {execs} executions in {:.0} s ({rate:.0}/s), slowest {:.2} s: {counts:?}",
        a.target,
        clock.elapsed().as_secs_f64(),
        slowest.as_secs_f64()
    );
    let findings = counts.get("panic").copied().unwrap_or(0) + counts.get("other error").copied().unwrap_or(0);
    std::process::exit(if findings == 0 { 0 } else { 1 });
}

/// One mutated seed.
fn mutant(a: &Args, seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut input = seeds[rng.below(seeds.len())].clone();
    let other = &seeds[rng.below(seeds.len())];
    if a.target == "recipe" && rng.below(2) == 0 {
        mutate_recipe(&mut input, rng);
    } else {
        mutate_bytes(&mut input, other, rng);
    }
    input
}

/// Aborts the process, keeping the input, when one execution runs past `timeout` seconds.
fn watchdog(clock: Instant, started: Arc<AtomicU64>, timeout: u64, current: PathBuf, out: PathBuf) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(250));
        let at = started.load(Ordering::SeqCst);
        if at != 0 && clock.elapsed().as_millis() as u64 > at + timeout * 1000 {
            let _ = std::fs::copy(&current, out.join("timeout"));
            eprintln!("an execution ran past {timeout} s; its input is in {}", out.join("timeout").display());
            std::process::abort();
        }
    });
}
