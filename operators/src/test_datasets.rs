//! Where tests find the labelled data sets (NAB, C-MAPSS, SKAB), and what happens when one is
//! missing.
//!
//! The data sets live beside the project, in `../shared/datasets` relative to the repository, or
//! wherever `VIGIL_DATASETS` points; nowhere else. A test that needs one calls [`require`]: when
//! the file or folder is there it gets its path; when it is not, the test is skipped with a line
//! on stderr saying so — unless it runs under CI (`CI=true`), where a missing data set is a
//! failure, so a CI run can never pass without running the tests that read them.
//!
//! Input: a path inside the data sets folder, the environment. Output: the full path, a skip, or
//! an error. State: none.

use std::path::{Path, PathBuf};

/// The data sets folder: `VIGIL_DATASETS` if set (and not empty), else `../shared/datasets`
/// relative to the repository (the parent of this crate's folder).
pub fn root(env_datasets: Option<&str>) -> PathBuf {
    match env_datasets.map(str::trim).filter(|s| !s.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("shared").join("datasets"),
    }
}

/// Whether `CI` says this is a CI run (`true`, `1` or `yes`, any case).
pub fn under_ci(env_ci: Option<&str>) -> bool {
    env_ci.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// Resolves `relative` inside the data sets folder given the values of `VIGIL_DATASETS` and
/// `CI`: `Ok(Some(path))` when it exists, `Ok(None)` (skip) when it does not and this is not CI,
/// `Err(why)` when it does not and this is CI.
pub fn resolve(relative: &str, env_datasets: Option<&str>, env_ci: Option<&str>) -> Result<Option<PathBuf>, String> {
    let path = root(env_datasets).join(relative);
    if path.exists() {
        return Ok(Some(path));
    }
    let why = format!(
        "data set {relative} not found at {} (the data sets are read from $VIGIL_DATASETS, else ../shared/datasets beside the repository)",
        path.display()
    );
    if under_ci(env_ci) {
        Err(format!("{why}; CI=true: a missing data set fails the run instead of skipping the test"))
    } else {
        Ok(None)
    }
}

/// [`resolve`] with the process environment, for tests: the path, or `None` after printing
/// `skipped: …` on stderr; panics under CI when the data set is missing.
pub fn require(relative: &str) -> Option<PathBuf> {
    let datasets = std::env::var("VIGIL_DATASETS").ok();
    let ci = std::env::var("CI").ok();
    match resolve(relative, datasets.as_deref(), ci.as_deref()) {
        Ok(Some(p)) => Some(p),
        Ok(None) => {
            eprintln!(
                "skipped: data set {relative} not found under {} (CI=true would fail)",
                root(datasets.as_deref()).display()
            );
            None
        }
        Err(why) => panic!("{why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_data_set_skips_outside_ci_and_fails_under_ci() {
        let empty = tempfile::tempdir().unwrap();
        let dir = empty.path().to_str().unwrap();
        assert_eq!(resolve("cmapss/train_FD001.txt", Some(dir), None), Ok(None));
        assert_eq!(resolve("cmapss/train_FD001.txt", Some(dir), Some("false")), Ok(None));
        let err = resolve("cmapss/train_FD001.txt", Some(dir), Some("true")).unwrap_err();
        assert!(err.contains("cmapss/train_FD001.txt") && err.contains("CI=true"), "{err}");
        assert!(resolve("nab", Some(dir), Some("1")).is_err());
    }

    #[test]
    fn a_present_data_set_is_found_under_vigil_datasets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("nab")).unwrap();
        let root = dir.path().to_str().unwrap();
        assert_eq!(resolve("nab", Some(root), Some("true")), Ok(Some(dir.path().join("nab"))));
    }

    #[test]
    fn without_vigil_datasets_the_folder_is_beside_the_repository() {
        let r = root(None);
        assert!(r.ends_with("shared/datasets"), "{}", r.display());
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert_eq!(r, repo.join("..").join("shared").join("datasets"));
        assert_eq!(root(Some("  ")), r, "an empty VIGIL_DATASETS is unset");
    }
}
