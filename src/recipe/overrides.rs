//! `--set a.b.c=value` overrides, applied to the parsed YAML before it is checked against the
//! schema, so an override of an unknown key fails exactly like a misspelt key in the file.

use crate::bad_input;
use serde_yaml::{Mapping, Value};

/// Applies one `path=value` override; the value is parsed as YAML (`3`, `true`, `[1, 2]`, text).
pub fn apply(doc: &mut Value, spec: &str) -> anyhow::Result<()> {
    let (path, raw) = spec.split_once('=').ok_or_else(|| bad_input!("--set `{spec}`: expected key.path=value"))?;
    let value: Value = serde_yaml::from_str(raw).map_err(|e| bad_input!("--set `{spec}`: value is not valid YAML: {e}"))?;
    let keys: Vec<&str> = path.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(bad_input!("--set `{spec}`: empty key in `{path}`"));
    }
    let mut node = doc;
    for (i, key) in keys.iter().enumerate() {
        if let Ok(index) = key.parse::<usize>() {
            let Value::Sequence(seq) = node else {
                return Err(bad_input!("--set `{spec}`: `{}` is not a list", keys[..i].join(".")));
            };
            let len = seq.len();
            node = seq.get_mut(index).ok_or_else(|| bad_input!("--set `{spec}`: index {index} out of range (list has {len})"))?;
            continue;
        }
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { unreachable!() };
        let k = Value::String(key.to_string());
        if !map.contains_key(&k) {
            map.insert(k.clone(), Value::Null);
        }
        node = map.get_mut(&k).expect("inserted above");
    }
    *node = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_nested_keys_and_list_items() {
        let mut doc: Value = serde_yaml::from_str("train: {epochs: 3}\nteachers: [{name: a}]").unwrap();
        apply(&mut doc, "train.epochs=5").unwrap();
        apply(&mut doc, "teachers.0.name=b").unwrap();
        apply(&mut doc, "distill.method=aver").unwrap();
        assert_eq!(doc["train"]["epochs"], Value::from(5));
        assert_eq!(doc["teachers"][0]["name"], Value::from("b"));
        assert_eq!(doc["distill"]["method"], Value::from("aver"));
        assert!(apply(&mut doc, "teachers.3.name=x").is_err());
        assert!(apply(&mut doc, "novalue").is_err());
    }
}
