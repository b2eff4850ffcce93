//! Listing fixture files: the files of a folder with a given extension, in name order.

use std::path::{Path, PathBuf};

/// The `*.{extension}` files directly in `dir`, sorted by path. Panics (naming the
/// folder) when it cannot be read: a test's fixtures are missing.
pub fn with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    files.sort();
    files
}
