//! Typed access to a node's attributes, with errors that name the node, op and attribute
//! (after tract's `get_attr`), plus constructors used by graph builders.

use crate::bad_input;
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};

/// Read-only view over one node's attributes.
pub struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto) -> Self {
        Attrs { node }
    }

    fn find(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn where_(&self, name: &str) -> String {
        format!("node `{}` ({}) attribute `{name}`", self.node.name, self.node.op_type)
    }

    fn expect_type(&self, a: &AttributeProto, want: AttributeType) -> anyhow::Result<()> {
        match a.type_.enum_value() {
            Ok(t) if t == want => Ok(()),
            // Some old exporters leave the type unset; fall back to which field is filled.
            Ok(AttributeType::UNDEFINED) => Ok(()),
            other => Err(bad_input!("{}: expected {want:?}, found {other:?}", self.where_(&a.name))),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    pub fn int(&self, name: &str) -> anyhow::Result<Option<i64>> {
        match self.find(name) {
            None => Ok(None),
            Some(a) => {
                self.expect_type(a, AttributeType::INT)?;
                Ok(Some(a.i))
            }
        }
    }

    pub fn int_or(&self, name: &str, default: i64) -> anyhow::Result<i64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    pub fn float_or(&self, name: &str, default: f32) -> anyhow::Result<f32> {
        match self.find(name) {
            None => Ok(default),
            Some(a) => {
                self.expect_type(a, AttributeType::FLOAT)?;
                Ok(a.f)
            }
        }
    }

    pub fn ints(&self, name: &str) -> anyhow::Result<Option<Vec<i64>>> {
        match self.find(name) {
            None => Ok(None),
            Some(a) => {
                self.expect_type(a, AttributeType::INTS)?;
                Ok(Some(a.ints.clone()))
            }
        }
    }

    pub fn floats(&self, name: &str) -> anyhow::Result<Option<Vec<f32>>> {
        match self.find(name) {
            None => Ok(None),
            Some(a) => {
                self.expect_type(a, AttributeType::FLOATS)?;
                Ok(Some(a.floats.clone()))
            }
        }
    }

    pub fn string(&self, name: &str) -> anyhow::Result<Option<String>> {
        match self.find(name) {
            None => Ok(None),
            Some(a) => {
                self.expect_type(a, AttributeType::STRING)?;
                String::from_utf8(a.s.clone()).map(Some).map_err(|_| bad_input!("{}: not UTF-8", self.where_(name)))
            }
        }
    }

    pub fn tensor(&self, name: &str) -> anyhow::Result<Option<&'a TensorProto>> {
        match self.find(name) {
            None => Ok(None),
            Some(a) => {
                self.expect_type(a, AttributeType::TENSOR)?;
                Ok(a.t.as_ref())
            }
        }
    }

    /// Error for an attribute value the op does not support, naming node and attribute.
    pub fn unsupported(&self, name: &str, what: impl std::fmt::Display) -> anyhow::Error {
        bad_input!("{}: unsupported value {what}", self.where_(name))
    }
}

pub fn int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

pub fn float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::FLOAT.into();
    a.f = v;
    a
}

pub fn tensor(name: &str, t: TensorProto) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::TENSOR.into();
    a.t = protobuf::MessageField::some(t);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_reads_and_named_errors() {
        let mut n = NodeProto::new();
        n.name = "conv1".into();
        n.op_type = "Conv".into();
        n.attribute.push(ints("pads", &[1, 1, 1, 1]));
        n.attribute.push(int("group", 2));
        let a = Attrs::new(&n);
        assert_eq!(a.ints("pads").unwrap(), Some(vec![1, 1, 1, 1]));
        assert_eq!(a.int_or("group", 1).unwrap(), 2);
        assert_eq!(a.int_or("missing", 7).unwrap(), 7);
        let err = a.int("pads").unwrap_err().to_string();
        assert!(err.contains("conv1") && err.contains("pads"), "{err}");
    }
}
