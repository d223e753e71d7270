//! Test-only access to the golden fixtures of `tests/fixtures/methods_golden.json`, written by
//! `scripts/golden-methods` from PyTorch (float64) on fixed inputs.

use crate::host::HostRead;
use serde_json::Value;
use std::sync::OnceLock;
use tch::{Kind, Tensor};

fn fixtures() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| serde_json::from_str(include_str!("../../tests/fixtures/methods_golden.json")).expect("fixture JSON"))
}

/// One case: its params, inputs and expected values.
pub struct Case {
    name: &'static str,
    value: &'static Value,
}

pub fn case(name: &'static str) -> Case {
    let value = &fixtures()["cases"][name];
    assert!(value.is_object(), "no golden case `{name}`");
    Case { name, value }
}

fn tensor(v: &Value, what: &str) -> Tensor {
    let shape: Vec<i64> = v["shape"].as_array().unwrap_or_else(|| panic!("{what}: no shape")).iter().map(|d| d.as_i64().unwrap()).collect();
    let data: Vec<f64> = v["data"].as_array().unwrap_or_else(|| panic!("{what}: no data")).iter().map(|d| d.as_f64().unwrap()).collect();
    Tensor::from_slice(&data).reshape(shape.as_slice())
}

impl Case {
    /// An input as float32 (what the methods compute in).
    pub fn input(&self, name: &str) -> Tensor {
        tensor(&self.value["inputs"][name], &format!("{}.inputs.{name}", self.name)).to_kind(Kind::Float)
    }

    /// Labels as int64.
    pub fn labels(&self, name: &str) -> Tensor {
        tensor(&self.value["inputs"][name], &format!("{}.inputs.{name}", self.name)).to_kind(Kind::Int64)
    }

    /// An input split along its leading (teacher) axis.
    pub fn per_teacher(&self, name: &str) -> Vec<Tensor> {
        self.input(name).unbind(0)
    }

    pub fn expected(&self, name: &str) -> Tensor {
        tensor(&self.value["expected"][name], &format!("{}.expected.{name}", self.name))
    }

    pub fn param(&self, name: &str) -> f64 {
        self.value["params"][name].as_f64().unwrap_or_else(|| panic!("{}.params.{name} is not a number", self.name))
    }

    /// Asserts `got` equals the expected `name` in shape and within `tol` (absolute, or relative
    /// for values above 1).
    pub fn check(&self, name: &str, got: &Tensor, tol: f64) {
        let want = self.expected(name);
        assert_eq!(got.size(), want.size(), "{}.{name}: shape", self.name);
        let got = got.detach().to_kind(Kind::Double).to_device(tch::Device::Cpu);
        let err = ((&got - &want).abs() / want.abs().clamp_min(1.0)).max().read_f64();
        assert!(err <= tol, "{}.{name}: error {err:.3e} > {tol:.0e}\ngot  {got}\nwant {want}", self.name);
    }
}
