//! Error classes that decide the exit code: bad input (2) versus runtime failure (3).
//!
//! Everything inside the crate returns `anyhow::Result`; a failure caused by what the user handed
//! in (recipe, model, data, arguments) carries a [`BadInput`] somewhere in its chain, which
//! `main` looks for to pick exit code 2. Anything else is a runtime failure.

use std::fmt;

/// Marker for errors caused by the user's input. The message names the key, file or node.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Builds an `anyhow::Error` marked as bad input, with `format!` arguments.
#[macro_export]
macro_rules! bad_input {
    ($($arg:tt)*) => {
        anyhow::Error::new($crate::error::BadInput(format!($($arg)*)))
    };
}

/// True when any error in the chain is a [`BadInput`].
pub fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<BadInput>())
}

/// Whether libtorch refused an operation because of its operands (shapes, ranks, types that do
/// not fit), as opposed to running out of memory or losing the device.
pub fn is_operand_error(err: &anyhow::Error) -> bool {
    let text = format!("{err:#}");
    err.chain().any(|e| e.is::<tch::TchError>())
        && !["out of memory", "CUDA error", "cudaError", "CUBLAS_STATUS", "CUDNN_STATUS"].iter().any(|m| text.contains(m))
}

/// `text` without the C++ backtraces libtorch appends to its messages ("Exception raised from
/// …" and the `frame #N` lines after it): users get the message, not libtorch's stack.
pub fn without_backtraces(text: &str) -> String {
    let mut out = Vec::new();
    let mut in_trace = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("Exception raised from") {
            in_trace = true;
            continue;
        }
        if in_trace && (t.starts_with("frame #") || t.is_empty()) {
            continue;
        }
        in_trace = false;
        out.push(line);
    }
    out.join("\n").trim_end().to_string()
}

/// `err` in a node of a model: a libtorch refusal of the node's operands is the model's problem
/// (bad input, the node named in `what`); anything else keeps its class.
pub fn in_node(err: anyhow::Error, what: String) -> anyhow::Error {
    if is_operand_error(&err) {
        anyhow::Error::new(BadInput(format!("{what}: the model's values do not fit this operation: {}", without_backtraces(&format!("{err:#}")))))
    } else {
        err.context(what)
    }
}

/// Extension to mark an arbitrary error as bad input while adding context that names the input.
pub trait BadInputContext<T> {
    fn bad_input<F: FnOnce() -> String>(self, what: F) -> anyhow::Result<T>;
}

impl<T, E: std::fmt::Display> BadInputContext<T> for Result<T, E> {
    fn bad_input<F: FnOnce() -> String>(self, what: F) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::Error::new(BadInput(format!("{}: {e}", what()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_backtraces_are_cut() {
        let text = "node `n` (Conv): expected 4 dims\nException raised from check at conv.cpp:12 (most recent call first):\nframe #0: f + 0x1 (0x1 in lib.so)\nframe #1: g\n (line 3, column 5)";
        assert_eq!(without_backtraces(text), "node `n` (Conv): expected 4 dims\n (line 3, column 5)");
    }

    #[test]
    fn a_libtorch_refusal_in_a_node_is_bad_input() {
        let refused =
            tch::Tensor::zeros([2, 3], (tch::Kind::Float, tch::Device::Cpu)).f_matmul(&tch::Tensor::zeros([2, 3], (tch::Kind::Float, tch::Device::Cpu)));
        let err = in_node(anyhow::Error::from(refused.unwrap_err()), "running node `fc` (Gemm)".into());
        assert!(is_bad_input(&err) && err.to_string().contains("`fc`"), "{err:#}");
        let other = in_node(anyhow::anyhow!("disk full"), "running node `fc` (Gemm)".into());
        assert!(!is_bad_input(&other));
    }

    #[test]
    fn bad_input_is_found_under_context() {
        let err = bad_input!("unknown key `foo`");
        let wrapped = err.context("reading recipe r.yaml");
        assert!(is_bad_input(&wrapped));
        assert!(!is_bad_input(&anyhow::anyhow!("disk full")));
    }
}
