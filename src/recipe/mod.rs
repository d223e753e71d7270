//! The recipe: its schema (strict: unknown keys are errors), `--set` overrides, and the plan
//! resolution that checks files, teachers and ops before any work starts.

pub mod overrides;
pub mod plan;
pub mod schema;

pub use plan::Plan;
pub use schema::Recipe;
