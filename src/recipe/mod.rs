//! The recipe: its schema (strict: unknown keys are errors), `--set` overrides, and parsing a
//! file into the typed schema. Checking it against files, teachers and ops is the plan's
//! (`pipeline::plan`).

pub mod overrides;
pub mod schema;

use crate::bad_input;
pub use schema::Recipe;
use std::path::Path;

/// Parses the recipe file with overrides into the typed schema.
pub fn parse(path: &Path, sets: &[String]) -> anyhow::Result<(Recipe, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| bad_input!("cannot read recipe {}: {e}", path.display()))?;
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| bad_input!("recipe {} is not valid YAML: {e}", path.display()))?;
    for s in sets {
        overrides::apply(&mut doc, s)?;
    }
    let recipe: Recipe = serde_yaml::from_value(doc).map_err(|e| bad_input!("recipe {}: {e}", path.display()))?;
    let resolved = serde_yaml::to_string(&recipe)?;
    Ok((recipe, resolved))
}
