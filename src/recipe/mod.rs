//! The recipe: its schema (strict: unknown keys are errors), `--set` overrides, and parsing a
//! file into the typed schema. Checking it against files, teachers and ops is the plan's
//! (`pipeline::plan`).

pub mod locate;
pub mod overrides;
mod problems;
pub mod schema;

use crate::bad_input;
pub use schema::Recipe;
use std::path::Path;

/// The largest recipe file read.
pub const MAX_RECIPE_BYTES: u64 = 1 << 20;
/// The deepest nesting of YAML collections a recipe may have (real ones stay under 8); deeper
/// documents are refused before the YAML parser, which slows down quadratically on them.
pub const MAX_NESTING: usize = 64;

/// Parses the recipe file with overrides into the typed schema. Every problem the schema finds
/// is reported at once, each with its key path (`teachers[3].output`) and its line and column
/// in the file, or the `--set` it came from.
pub fn parse(path: &Path, sets: &[String]) -> anyhow::Result<(Recipe, String)> {
    let bytes = crate::fsio::read_regular(path, "recipe", MAX_RECIPE_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|e| bad_input!("recipe {} is not UTF-8 text: {e}", path.display()))?;
    check_nesting(&text).map_err(|line| bad_input!("recipe {}: line {line} nests collections deeper than {MAX_NESTING} levels", path.display()))?;
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| bad_input!("recipe {} is not valid YAML: {e}", path.display()))?;
    let mut set_keys = Vec::new();
    for s in sets {
        overrides::apply(&mut doc, s)?;
        let key = s.split_once('=').map_or(s.as_str(), |(k, _)| k);
        set_keys.push((problems::serde_path(key), s.clone()));
    }
    let recipe = problems::deserialize_all(doc).map_err(|found| {
        let where_ = problems::Locator { positions: locate::positions(&text), sets: set_keys };
        let lines: Vec<String> = found.iter().map(|p| format!("  - {}", where_.describe(p))).collect();
        let n = lines.len();
        bad_input!("recipe {}: {n} problem{}:\n{}", path.display(), if n == 1 { "" } else { "s" }, lines.join("\n"))
    })?;
    let resolved = serde_yaml::to_string(&recipe)?;
    Ok((recipe, resolved))
}

/// Places problem lines found after parsing (by the plan) in the recipe file or its `--set`s:
/// each line that starts with a key path gets the bracket form and its line and column.
pub fn place_problems(path: &Path, sets: &[String], lines: &[String]) -> Vec<String> {
    let text = crate::fsio::read_regular(path, "recipe", MAX_RECIPE_BYTES).ok().and_then(|b| String::from_utf8(b).ok()).unwrap_or_default();
    let sets = sets.iter().map(|s| (problems::serde_path(s.split_once('=').map_or(s.as_str(), |(k, _)| k)), s.clone())).collect();
    let locator = problems::Locator { positions: locate::positions(&text), sets };
    lines.iter().map(|l| locator.place(l)).collect()
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
