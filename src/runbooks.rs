//! Finding runbook files on disk: folders are searched for `.yaml` and `.yml` files, and a
//! runbook can be named instead of given as a path. A file named `NAME.test.yaml` is not a
//! runbook but the tests of one (`steady test`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use steady_engine::Parsed;

/// A runbook file read from disk, with its parse result.
#[derive(Debug)]
pub struct RunbookFile {
    pub path: PathBuf,
    pub source: String,
    pub parsed: Parsed,
}

impl RunbookFile {
    pub fn read(path: &Path) -> anyhow::Result<RunbookFile> {
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let parsed = steady_engine::parse(&source);
        Ok(RunbookFile { path: path.to_owned(), source, parsed })
    }

    pub fn display_path(&self) -> String {
        self.path.display().to_string()
    }
}

/// The files that command-line paths name: files as given, folders searched.
#[derive(Debug, Default)]
pub struct Named {
    pub runbooks: Vec<PathBuf>,
    /// Test files (`NAME.test.yaml`), given or found.
    pub tests: Vec<PathBuf>,
}

/// The runbook and test files that command-line paths name. A path that does not exist is
/// bad usage: it is reported, and `None` returned.
pub fn named_by(paths: &[PathBuf]) -> anyhow::Result<Option<Named>> {
    let mut named = Named::default();
    for path in paths {
        if path.is_dir() {
            named.runbooks.extend(files_in(path)?);
            named.tests.extend(test_files_in(path)?);
        } else if path.exists() {
            if is_test_file(path) {
                named.tests.push(path.clone());
            } else {
                named.runbooks.push(path.clone());
            }
        } else {
            crate::report::file_error(&path.display().to_string(), "no such file or folder");
            return Ok(None);
        }
    }
    Ok(Some(named))
}

fn is_test_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(steady_engine::testing::is_test_file)
}

/// The runbook files under `folder`, in a stable order, searched recursively.
pub fn files_in(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(yaml_files_in(folder)?.into_iter().filter(|path| !is_test_file(path)).collect())
}

/// The test files under `folder`, in a stable order, searched recursively.
pub fn test_files_in(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(yaml_files_in(folder)?.into_iter().filter(|path| is_test_file(path)).collect())
}

/// The test file beside a runbook file: `NAME.test.yaml` (or `.yml`) for `NAME.yaml`.
pub fn test_file_beside(runbook: &Path) -> Option<PathBuf> {
    let stem = runbook.file_stem()?.to_str()?;
    let folder = runbook.parent().unwrap_or(Path::new("."));
    steady_engine::testing::SUFFIXES
        .iter()
        .map(|suffix| folder.join(format!("{stem}{suffix}")))
        .find(|path| path.is_file())
}

fn yaml_files_in(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut folders = vec![folder.to_owned()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .with_context(|| format!("{}: cannot read folder", folder.display()))?;
        for entry in entries {
            let entry =
                entry.with_context(|| format!("{}: cannot read folder", folder.display()))?;
            let path = entry.path();
            // A symbolic link to a folder is not followed (`ln -s . loop` would be read for
            // ever); one to a file is. Nothing but regular files is read (a FIFO would block).
            let Ok(kind) = entry.file_type() else { continue };
            let is_file = kind.is_file()
                || (kind.is_symlink() && std::fs::metadata(&path).is_ok_and(|m| m.is_file()));
            if kind.is_dir() {
                folders.push(path);
            } else if is_file
                && matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Finds a runbook given as a file path, or by its `name` in `folder`.
pub fn find(reference: &str, folder: &Path) -> anyhow::Result<RunbookFile> {
    let path = Path::new(reference);
    if path.is_file() {
        return RunbookFile::read(path);
    }
    if reference.contains(['/', '\\'])
        || reference.ends_with(".yaml")
        || reference.ends_with(".yml")
    {
        bail!("{reference}: no such runbook file");
    }
    if !folder.is_dir() {
        bail!(
            "no runbook file `{reference}`, and no runbooks folder {} to look for it by name",
            folder.display()
        );
    }
    let mut names = Vec::new();
    for path in files_in(folder)? {
        let file = RunbookFile::read(&path)?;
        let name = file.parsed.runbook.as_ref().map(|runbook| runbook.name.clone());
        // A file named after the runbook is taken even when invalid, to show its errors.
        if name.as_deref() == Some(reference)
            || path.file_stem().is_some_and(|stem| stem == reference)
        {
            return Ok(file);
        }
        names.extend(name);
    }
    names.sort();
    bail!("no runbook named `{reference}` in {} (found: {})", folder.display(), names.join(", "))
}
