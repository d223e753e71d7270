//! Reading and writing ONNX model files: protobuf parsing with errors that name the file,
//! external-data inlining with path-safety checks (each tensor reads only its own range of a
//! regular file), and atomic writes.

use crate::bad_input;
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{Message, ModelProto, TensorProto};
use std::path::{Component, Path, PathBuf};

/// The largest model file read: protobuf's own limit (external data lies beside it).
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// Reads a model and inlines every initializer stored as external data.
pub fn read(path: &Path) -> anyhow::Result<ModelProto> {
    let bytes = crate::fsio::read_regular(path, "model file", MAX_MODEL_BYTES)?;
    let mut model = ModelProto::parse_from_bytes(&bytes).map_err(|e| bad_input!("{} is not a valid ONNX model: {e}", path.display()))?;
    // A bare file name has an empty parent: its folder is the current one.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let graph = model.graph.mut_or_insert_default();
    for init in graph.initializer.iter_mut() {
        inline_external(init, dir, path)?;
    }
    Ok(model)
}

/// Serializes a model and writes it atomically (temporary file, then rename), so a crash never
/// leaves a half-written file that looks finished.
pub fn write(model: &ModelProto, path: &Path) -> anyhow::Result<()> {
    let bytes = model.write_to_bytes()?;
    crate::fsio::write_atomic(path, &bytes)
}

fn inline_external(t: &mut TensorProto, dir: &Path, model: &Path) -> anyhow::Result<()> {
    if t.data_location.enum_value_or_default() != DataLocation::EXTERNAL {
        return Ok(());
    }
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for kv in &t.external_data {
        match kv.key.as_str() {
            "location" => location = Some(kv.value.clone()),
            "offset" => offset = kv.value.parse().map_err(|_| bad_field(t, model, "offset"))?,
            "length" => length = Some(kv.value.parse::<u64>().map_err(|_| bad_field(t, model, "length"))?),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| bad_field(t, model, "location"))?;
    let file =
        safe_join(dir, &location).map_err(|why| bad_input!("{}: initializer `{}` external data location `{location}` {why}", model.display(), t.name))?;
    let what = format!("{}: initializer `{}`: external data", model.display(), t.name);
    t.raw_data = crate::fsio::read_range(&file, &what, offset, length)?;
    t.external_data.clear();
    t.data_location = DataLocation::DEFAULT.into();
    Ok(())
}

fn bad_field(t: &TensorProto, model: &Path, key: &str) -> anyhow::Error {
    bad_input!("{}: initializer `{}` has a missing or invalid external data `{key}`", model.display(), t.name)
}

/// Joins `location` under `dir`, refusing absolute paths, `..` and symlinks that lead outside.
pub fn safe_join(dir: &Path, location: &str) -> Result<PathBuf, &'static str> {
    let rel = Path::new(location);
    if rel.is_absolute() {
        return Err("is an absolute path (refused: external data must lie beside the model)");
    }
    if rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err("leaves the model's folder (refused)");
    }
    let joined = dir.join(rel);
    let (Ok(real_dir), Ok(real_file)) = (dir.canonicalize(), joined.canonicalize()) else {
        return Err("does not exist");
    };
    if !real_file.starts_with(&real_dir) {
        return Err("resolves outside the model's folder through a symlink (refused)");
    }
    Ok(real_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_locations_that_escape_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.bin"), [0u8; 8]).unwrap();
        assert!(safe_join(dir.path(), "w.bin").is_ok());
        assert!(safe_join(dir.path(), "../w.bin").is_err());
        assert!(safe_join(dir.path(), "/etc/passwd").is_err());
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
        assert!(safe_join(dir.path(), "link").is_err());
    }
}
