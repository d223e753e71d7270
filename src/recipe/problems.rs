//! Every schema problem of a recipe at once: the document is checked against the schema, and
//! each problem found is recorded and its key taken out (a misspelt key, a value of the wrong
//! type) before checking again, until the document passes or a problem cannot be stepped over
//! (a required key missing). Each problem is then placed: its `--set`, or its line and column.

use super::locate::Position;
use super::Recipe;
use serde_yaml::Value;
use std::collections::BTreeMap;

/// One problem: the key path it concerns (`teachers[0].output`) and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// The most problems reported for one recipe; past it the list ends.
const MAX_PROBLEMS: usize = 32;

/// The recipe in `doc`, or every problem found in it.
pub fn deserialize_all(mut doc: Value) -> Result<Recipe, Vec<Problem>> {
    let mut problems: Vec<Problem> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let err = match serde_path_to_error::deserialize::<_, Recipe>(doc.clone()) {
            Ok(recipe) if problems.is_empty() => return Ok(recipe),
            Ok(_) => return Err(problems),
            Err(e) => e,
        };
        let at = match err.path().to_string() {
            p if p == "." => String::new(),
            p => p,
        };
        let message = err.inner().to_string();
        if let Some(field) = between(&message, "unknown field `", "`") {
            // serde_path_to_error's path already ends at the unknown key.
            let path = if at == field || at.ends_with(&format!(".{field}")) { at.clone() } else { join(&at, field) };
            problems.push(Problem { path: path.clone(), message });
            if !remove(&mut doc, &path) {
                break;
            }
        } else if let Some(field) = between(&message, "missing field `", "`") {
            let path = join(&at, field);
            // A required key taken out above was reported for what it held.
            if !removed.contains(&path) {
                problems.push(Problem { path, message: format!("the required key `{field}` is missing") });
            }
            break;
        } else {
            problems.push(Problem { path: at.clone(), message });
            // A bad list item takes its whole list out: removing the item would only misreport
            // the list's length.
            let target = at.rsplit_once('[').filter(|(_, rest)| rest.ends_with(']') && !rest.contains('.')).map_or(at.as_str(), |(head, _)| head).to_string();
            if target.is_empty() || !remove(&mut doc, &target) {
                break;
            }
            removed.push(target);
        }
    }
    Err(problems)
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// One step of a key path.
#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `teachers[0].output` → [teachers, 0, output].
fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Step::Key(key.to_string()));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                out.push(Step::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    out
}

/// Removes the entry at `path` from `doc`; false when there is none.
fn remove(doc: &mut Value, path: &str) -> bool {
    let mut steps = steps(path);
    let Some(last) = steps.pop() else { return false };
    let mut node = doc;
    for s in &steps {
        node = match (s, node) {
            (Step::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Step::Index(i), Value::Sequence(seq)) => match seq.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Step::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        (Step::Index(i), Value::Sequence(seq)) if i < seq.len() => {
            seq.remove(i);
            true
        }
        _ => false,
    }
}

/// A `--set` key (`teachers.0.output`) in the form problems use (`teachers[0].output`).
pub fn serde_path(set_key: &str) -> String {
    let mut out = String::new();
    for part in set_key.split('.') {
        if part.parse::<usize>().is_ok() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Places problems: in a `--set`, or at a line and column of the file.
pub struct Locator {
    pub positions: BTreeMap<String, Position>,
    /// Each `--set`'s key path and the whole argument.
    pub sets: Vec<(String, String)>,
}

/// The top-level keys of a recipe: a problem line that starts with one of them names a key.
const SECTIONS: &[&str] =
    &["version", "name", "seed", "device", "data", "teachers", "student", "distill", "train", "export", "validate", "compare", "quantize"];

impl Locator {
    /// A problem line of the plan (`teachers.0.onnx: file … does not exist`) with its key in
    /// the bracket form (`teachers[0].onnx`) and its place appended; a line that does not start
    /// with a key is returned as it is.
    pub fn place(&self, line: &str) -> String {
        let end = line.find([':', ' ']).unwrap_or(line.len());
        let (key, rest) = line.split_at(end);
        let section = key.split(['.', '[']).next().unwrap_or("");
        if !SECTIONS.contains(&section) {
            return line.to_string();
        }
        let path = serde_path(key);
        let place = self.place_of(&path).map_or(String::new(), |p| format!(" ({p})"));
        format!("{path}{rest}{place}")
    }

    /// "teachers[0].outputs: unknown field … (line 10, column 5)".
    pub fn describe(&self, p: &Problem) -> String {
        let key = if p.path.is_empty() { "the recipe" } else { p.path.as_str() };
        match self.place_of(&p.path) {
            Some(place) => format!("{key}: {} ({place})", p.message),
            None => format!("{key}: {}", p.message),
        }
    }

    /// Where the key at `path` comes from: the `--set` that wrote it or one of its parents, else
    /// its line and column (or its nearest parent's), noting a `--set` below it.
    fn place_of(&self, path: &str) -> Option<String> {
        let under = |k: &str, parent: &str| k.starts_with(&format!("{parent}.")) || k.starts_with(&format!("{parent}["));
        if let Some((_, spec)) = self.sets.iter().rev().find(|(k, _)| path == k || under(path, k)) {
            return Some(format!("from --set {spec}"));
        }
        let changed = self.sets.iter().rev().find(|(k, _)| !path.is_empty() && under(k, path)).map(|(_, spec)| format!("--set {spec} changed it"));
        let mut probe = path;
        loop {
            if let Some(pos) = self.positions.get(probe) {
                let within = if probe == path { String::new() } else { format!(", in {probe}") };
                let changed = changed.map_or(String::new(), |c| format!("; {c}"));
                return Some(format!("line {}, column {}{within}{changed}", pos.line, pos.column));
            }
            match probe.rfind(['.', '[']) {
                Some(i) => probe = &probe[..i],
                None => return changed,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_and_convert() {
        assert_eq!(
            steps("teachers[0].input.mean[2]"),
            [Step::Key("teachers".into()), Step::Index(0), Step::Key("input".into()), Step::Key("mean".into()), Step::Index(2)]
        );
        assert_eq!(serde_path("teachers.0.output"), "teachers[0].output");
        assert_eq!(serde_path("train.epochs"), "train.epochs");
        let mut doc: Value = serde_yaml::from_str("a: {b: [1, {c: 2}]}").unwrap();
        assert!(remove(&mut doc, "a.b[1].c"));
        assert!(!remove(&mut doc, "a.x"));
        assert_eq!(doc, serde_yaml::from_str::<Value>("a: {b: [1, {}]}").unwrap());
    }

    #[test]
    fn plan_lines_get_their_place() {
        let text = "teachers:\n  - name: a\n    onnx: a.onnx\ntrain: {epochs: 1}\n";
        let l = Locator { positions: crate::recipe::locate::positions(text), sets: vec![("train.epochs".into(), "train.epochs=0".into())] };
        assert_eq!(l.place("teachers.0.onnx: file a.onnx does not exist"), "teachers[0].onnx: file a.onnx does not exist (line 3, column 5)");
        assert_eq!(l.place("teachers.0 (a): predicts 7 classes"), "teachers[0] (a): predicts 7 classes (line 2, column 5)");
        assert_eq!(l.place("train.epochs must be positive"), "train.epochs must be positive (from --set train.epochs=0)");
        assert_eq!(l.place("no teacher given"), "no teacher given");
    }
}
