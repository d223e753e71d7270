//! The recipe: its schema (strict: unknown keys are errors), `--set` overrides, and parsing a
//! file into the typed schema. Checking it against files, teachers and ops is the plan's
//! (`pipeline::plan`).

pub mod overrides;
pub mod schema;

use crate::bad_input;
pub use schema::Recipe;
use std::path::Path;

/// The largest recipe file read.
pub const MAX_RECIPE_BYTES: u64 = 1 << 20;
/// The deepest nesting of YAML collections a recipe may have (real ones stay under 8); deeper
/// documents are refused before the YAML parser, which slows down quadratically on them.
pub const MAX_NESTING: usize = 64;

/// Parses the recipe file with overrides into the typed schema. A type error names its key
/// path (`train.threads`), and its line when no `--set` changed the document.
pub fn parse(path: &Path, sets: &[String]) -> anyhow::Result<(Recipe, String)> {
    let bytes = crate::fsio::read_regular(path, "recipe", MAX_RECIPE_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|e| bad_input!("recipe {} is not UTF-8 text: {e}", path.display()))?;
    check_nesting(&text).map_err(|line| bad_input!("recipe {}: line {line} nests collections deeper than {MAX_NESTING} levels", path.display()))?;
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| bad_input!("recipe {} is not valid YAML: {e}", path.display()))?;
    for s in sets {
        overrides::apply(&mut doc, s)?;
    }
    // From the text, serde_yaml's errors carry the key path and the line themselves; after
    // overrides only the document is left, and the path comes from serde_path_to_error.
    let recipe: Recipe = if sets.is_empty() {
        serde_yaml::from_str(&text).map_err(|e| bad_input!("recipe {}: {e}", path.display()))?
    } else {
        serde_path_to_error::deserialize(doc).map_err(|e| match e.path().to_string().as_str() {
            "." | "" => bad_input!("recipe {}: {}", path.display(), e.inner()),
            key => bad_input!("recipe {}: {key}: {}", path.display(), e.inner()),
        })?
    };
    let resolved = serde_yaml::to_string(&recipe)?;
    Ok((recipe, resolved))
}

/// The first line whose flow collections (`[`, `{`) or block indentation go deeper than
/// [`MAX_NESTING`], as an error; quoted text is skipped.
fn check_nesting(text: &str) -> Result<(), usize> {
    let mut depth = 0usize;
    for (i, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches([' ', '-']).len();
        let mut quote: Option<char> = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(i + 1);
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if indent / 2 > MAX_NESTING {
            return Err(i + 1);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn nesting_is_bounded_and_quotes_do_not_count() {
        assert_eq!(super::check_nesting("a: {b: [1, 2], c: '[[[['}\nd: \"{{{{\""), Ok(()));
        let deep = format!("a: {}1{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(super::check_nesting(&format!("x: 1\n{deep}")), Err(2));
        let indented: String = (0..70).map(|i| format!("{}k{i}:\n", " ".repeat(2 * i))).collect();
        assert!(super::check_nesting(&indented).is_err());
    }
}
