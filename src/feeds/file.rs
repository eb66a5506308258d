//! The `file` source: one STIX 1.x XML file, or every `*.xml` file of a
//! directory in name order.

use std::path::{Path, PathBuf};

use super::stix1::{self, ParseContext, ParseOutcome};

/// An error reading a file source.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} is larger than max_bytes = {max_bytes}; raise max_bytes or split the file")]
    TooLarge { path: PathBuf, max_bytes: u64 },
    #[error("cannot parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
}

/// Everything read from a file source.
#[derive(Debug, Clone, Default)]
pub struct FileResult {
    pub outcome: ParseOutcome,
    /// Files read.
    pub files: u64,
}

/// Lists the files of a source: the path itself, or the `*.xml` files of a
/// directory sorted by name.
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>, FileError> {
    let read_error = |reason: String| FileError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = std::fs::metadata(path).map_err(|e| read_error(e.to_string()))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| read_error(e.to_string()))? {
        let entry = entry.map_err(|e| read_error(e.to_string()))?;
        let file = entry.path();
        let is_xml = file
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("xml"));
        if is_xml && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and parses every file of the source. Any unreadable or unparsable
/// file fails the whole read, so a partial set never replaces a good one.
pub fn read_source(
    path: &Path,
    max_bytes: u64,
    context: &ParseContext,
) -> Result<FileResult, FileError> {
    let mut result = FileResult::default();
    for file in list_files(path)? {
        let size = std::fs::metadata(&file)
            .map_err(|e| FileError::Read {
                path: file.clone(),
                reason: e.to_string(),
            })?
            .len();
        if size > max_bytes {
            return Err(FileError::TooLarge {
                path: file,
                max_bytes,
            });
        }
        let text = std::fs::read_to_string(&file).map_err(|e| FileError::Read {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        let outcome = stix1::parse(&text, context).map_err(|e| FileError::Parse {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        result.files += 1;
        result.outcome.absorb(outcome);
    }
    Ok(result)
}
