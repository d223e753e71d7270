//! Where each key of a recipe file is: key path (`teachers[3].output`, the form errors use) →
//! line and column, read from the YAML parser's event marks, so a problem found on the parsed
//! document can still point into the file.

use std::collections::BTreeMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in the file: 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Every mapping key and sequence item of `text`, by path. Empty when the text does not parse
/// (the YAML error is reported on its own).
pub fn positions(text: &str) -> BTreeMap<String, Position> {
    struct Events(Vec<(Event, Marker)>);
    impl MarkedEventReceiver for Events {
        fn on_event(&mut self, ev: Event, mark: Marker) {
            self.0.push((ev, mark));
        }
    }
    let mut events = Events(Vec::new());
    let mut out = BTreeMap::new();
    if Parser::new_from_str(text).load(&mut events, false).is_err() {
        return out;
    }
    let ev = &events.0;
    let mut i = ev.iter().position(|(e, _)| matches!(e, Event::MappingStart(..) | Event::SequenceStart(..) | Event::Scalar(..))).unwrap_or(ev.len());
    node(ev, &mut i, "", &mut out);
    out
}

fn at(m: &Marker) -> Position {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Position { line: m.line(), column: m.col() + 1 }
}

/// Walks the node starting at `ev[*i]` (under `path`), leaving `*i` after it.
fn node(ev: &[(Event, Marker)], i: &mut usize, path: &str, out: &mut BTreeMap<String, Position>) {
    let Some((first, _)) = ev.get(*i) else { return };
    *i += 1;
    match first {
        Event::SequenceStart(..) => {
            let mut k = 0;
            while let Some((e, m)) = ev.get(*i) {
                if *e == Event::SequenceEnd {
                    *i += 1;
                    return;
                }
                let p = format!("{path}[{k}]");
                // A block mapping's own mark lies past its first key: an item that is a mapping
                // is placed at its first key.
                let mark = match (e, ev.get(*i + 1)) {
                    (Event::MappingStart(..), Some((Event::Scalar(..), first))) => first,
                    _ => m,
                };
                out.entry(p.clone()).or_insert(at(mark));
                node(ev, i, &p, out);
                k += 1;
            }
        }
        Event::MappingStart(..) => {
            while let Some((e, m)) = ev.get(*i) {
                let key = match e {
                    Event::MappingEnd => {
                        *i += 1;
                        return;
                    }
                    Event::Scalar(s, ..) => {
                        *i += 1;
                        s.clone()
                    }
                    // A collection as a key: not a recipe's, walked past.
                    _ => {
                        node(ev, i, &format!("{path}.?"), out);
                        "?".into()
                    }
                };
                let p = if path.is_empty() { key } else { format!("{path}.{key}") };
                out.entry(p.clone()).or_insert(at(m));
                node(ev, i, &p, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_items_of_block_and_flow_collections() {
        let text = "name: x\ndata:\n  format: synthetic\n  normalize: {mean: [1, 2, 3], std: 1}\nteachers:\n  - name: a\n    onnx: a.onnx\n  - {name: b, output: logits}\n";
        let p = positions(text);
        let pos = |k: &str| p.get(k).map(|p| (p.line, p.column));
        assert_eq!(pos("name"), Some((1, 1)));
        assert_eq!(pos("data.format"), Some((3, 3)));
        assert_eq!(pos("data.normalize.mean"), Some((4, 15)));
        assert_eq!(pos("data.normalize.mean[2]"), Some((4, 28)));
        assert_eq!(pos("teachers[0]"), Some((6, 5)));
        assert_eq!(pos("teachers[1]"), Some((8, 6)));
        assert_eq!(pos("teachers[0].onnx"), Some((7, 5)));
        assert_eq!(pos("teachers[1].output"), Some((8, 15)));
        assert!(positions("a: [1, 2").is_empty(), "unparsable text has no positions");
    }
}
