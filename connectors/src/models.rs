//! The model registry: versioned model artifacts with their metadata, on disk.
//!
//! Input: a trained model's artifact (bytes, any format its trainer chooses) and its
//! [`ModelMeta`] (kind, parameters, training data and its hash, validation metrics). Output:
//! [`ModelVersion`]s — the metadata with the version number and creation time the registry
//! gave — and the artifact back.
//!
//! Layout under the registry directory: `<name>/v<version>/` holding `model.<ext>` and
//! `meta.json`. Versions of a name are 1, 2, 3, … in registration order. A version is written
//! into a temporary folder (artifact and metadata fsynced) and renamed into place, under a lock
//! file per name, so a reader sees a version whole or not at all and two trainers never take
//! the same number. Versions are never changed once written. Nothing is cached: the files are
//! the state, so the pipeline, the API and the CLI sharing a directory all see the same thing.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{ConnectorError, Result};

/// Folder of the registry under a data directory, when no other is configured.
pub const MODELS_DIR: &str = "_models";

/// What a trainer says about the model it registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelMeta {
    /// What kind of model this is (e.g. `gbt-rul`): which code can load the artifact.
    pub kind: String,
    /// Training parameters.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub params: serde_json::Value,
    /// The training data (a path or a description).
    pub training_data: String,
    /// SHA-256 of the training data, hex.
    pub training_data_sha256: String,
    /// Validation metrics (e.g. `rmse`, `phm08_score`).
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Free text.
    #[serde(default)]
    pub notes: Option<String>,
}

/// A registered version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelVersion {
    /// Model name.
    pub name: String,
    /// Version (1, 2, …).
    pub version: u32,
    /// Registration time, ms since the epoch.
    pub created_ms: i64,
    /// File name of the artifact in the version's folder.
    pub artifact: String,
    /// Size of the artifact in bytes.
    pub artifact_bytes: u64,
    /// What the trainer said.
    #[serde(flatten)]
    pub meta: ModelMeta,
}

/// A model and its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelSummary {
    /// Model name.
    pub name: String,
    /// Number of versions.
    pub versions: u32,
    /// The latest version.
    pub latest: ModelVersion,
}

/// Which version of a model: `NAME`, `NAME@latest` or `NAME@<version>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// Model name.
    pub name: String,
    /// A pinned version (`None`: the latest).
    pub version: Option<u32>,
}

impl std::str::FromStr for ModelRef {
    type Err = ConnectorError;
    fn from_str(s: &str) -> Result<Self> {
        let (name, version) = match s.split_once('@') {
            None => (s, None),
            Some((n, "latest")) => (n, None),
            Some((n, v)) => {
                let v = v.strip_prefix('v').unwrap_or(v);
                let v: u32 =
                    v.parse().map_err(|_| ConnectorError::Invalid(format!("{s:?}: the version must be a number or `latest`")))?;
                (n, Some(v))
            }
        };
        check_name(name)?;
        Ok(ModelRef { name: name.to_string(), version })
    }
}

/// Model names are folder names: letters, digits, `-`, `_` and `.`, not starting with `.`.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConnectorError::Invalid(format!(
            "{name:?} is not a model name (letters, digits, '-', '_' and '.', at most 100, not starting with '.')"
        )))
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut f = File::open(path).map_err(|e| ConnectorError::io(path, e))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| ConnectorError::io(path, e))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A registry directory.
#[derive(Debug, Clone)]
pub struct ModelRegistry {
    root: PathBuf,
}

impl ModelRegistry {
    /// The registry at `root` (created on the first registration).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ModelRegistry { root: root.into() }
    }

    /// The registry of a data directory (`DATA/_models`).
    pub fn in_data_dir(data_dir: &Path) -> Self {
        ModelRegistry::new(data_dir.join(MODELS_DIR))
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every model, by name, with its latest version.
    pub fn list(&self) -> Result<Vec<ModelSummary>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(ConnectorError::io(&self.root, e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| check_name(n).is_ok())
            .collect();
        names.sort();
        for name in names {
            let versions = self.versions(&name)?;
            if let Some(latest) = versions.last() {
                out.push(ModelSummary { name, versions: versions.len() as u32, latest: latest.clone() });
            }
        }
        Ok(out)
    }

    /// A model's versions, oldest first (empty if there is no such model).
    pub fn versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        check_name(name)?;
        let dir = self.root.join(name);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ConnectorError::io(&dir, e)),
        };
        let mut numbers: Vec<u32> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix('v')).and_then(|v| v.parse().ok()))
            .collect();
        numbers.sort_unstable();
        numbers.into_iter().map(|v| self.read_meta(name, v)).collect()
    }

    /// The version `r` names (`None`: no such model or version).
    pub fn resolve(&self, r: &ModelRef) -> Result<Option<ModelVersion>> {
        match r.version {
            Some(v) => {
                check_name(&r.name)?;
                if self.version_dir(&r.name, v).join("meta.json").exists() {
                    self.read_meta(&r.name, v).map(Some)
                } else {
                    Ok(None)
                }
            }
            None => Ok(self.versions(&r.name)?.pop()),
        }
    }

    /// The artifact of a version.
    pub fn artifact(&self, v: &ModelVersion) -> Result<Vec<u8>> {
        let path = self.version_dir(&v.name, v.version).join(&v.artifact);
        fs::read(&path).map_err(|e| ConnectorError::io(&path, e))
    }

    /// Registers a new version of `name` with its artifact (`model.<ext>`) and metadata; returns it.
    pub fn register(&self, name: &str, ext: &str, artifact: &[u8], meta: ModelMeta, now_ms: i64) -> Result<ModelVersion> {
        check_name(name)?;
        if ext.is_empty() || !ext.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ConnectorError::Invalid(format!("{ext:?} is not a file extension")));
        }
        let dir = self.root.join(name);
        fs::create_dir_all(&dir).map_err(|e| ConnectorError::io(&dir, e))?;
        let lock_path = dir.join(".lock");
        let lock = crate::open_lock_file(&lock_path)?;
        lock.lock().map_err(|e| ConnectorError::io(&lock_path, e))?;
        let version = self.versions(name)?.last().map_or(1, |v| v.version + 1);
        let tmp = dir.join(format!(".tmp-v{version}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(|e| ConnectorError::io(&tmp, e))?;
        let file = format!("model.{ext}");
        let v = ModelVersion {
            name: name.to_string(),
            version,
            created_ms: now_ms,
            artifact: file.clone(),
            artifact_bytes: artifact.len() as u64,
            meta,
        };
        let json = serde_json::to_vec_pretty(&v).map_err(|e| ConnectorError::Invalid(format!("model metadata: {e}")))?;
        write_synced(&tmp.join(&file), artifact)?;
        write_synced(&tmp.join("meta.json"), &json)?;
        let target = self.version_dir(name, version);
        fs::rename(&tmp, &target).map_err(|e| ConnectorError::io(&target, e))?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| ConnectorError::io(&dir, e))?;
        drop(lock);
        Ok(v)
    }

    fn version_dir(&self, name: &str, version: u32) -> PathBuf {
        self.root.join(name).join(format!("v{version}"))
    }

    fn read_meta(&self, name: &str, version: u32) -> Result<ModelVersion> {
        let path = self.version_dir(name, version).join("meta.json");
        let bytes = fs::read(&path).map_err(|e| ConnectorError::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| ConnectorError::Invalid(format!("{}: {e}", path.display())))
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| ConnectorError::io(path, e))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| ConnectorError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(rmse: f64) -> ModelMeta {
        ModelMeta {
            kind: "gbt-rul".into(),
            params: serde_json::json!({"trees": 100}),
            training_data: "train_FD001.txt".into(),
            training_data_sha256: "ab".repeat(32),
            metrics: [("rmse".to_string(), rmse)].into_iter().collect(),
            notes: None,
        }
    }

    #[test]
    fn versions_count_up_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let reg = ModelRegistry::new(dir.path().join("models"));
        assert!(reg.list().unwrap().is_empty());
        let v1 = reg.register("rul", "json", b"{\"a\":1}", meta(15.0), 1).unwrap();
        let v2 = reg.register("rul", "json", b"{\"a\":2}", meta(13.0), 2).unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        let list = reg.list().unwrap();
        assert_eq!((list.len(), list[0].versions, list[0].latest.version), (1, 2, 2));
        let latest = reg.resolve(&"rul@latest".parse().unwrap()).unwrap().unwrap();
        assert_eq!(reg.artifact(&latest).unwrap(), b"{\"a\":2}");
        let pinned = reg.resolve(&"rul@1".parse().unwrap()).unwrap().unwrap();
        assert_eq!(pinned.meta.metrics["rmse"], 15.0);
        assert!(reg.resolve(&"rul@9".parse().unwrap()).unwrap().is_none());
        assert!(reg.resolve(&"other".parse().unwrap()).unwrap().is_none());
    }

    #[test]
    fn names_are_checked() {
        assert!("../etc".parse::<ModelRef>().is_err());
        assert!("rul@x".parse::<ModelRef>().is_err());
        assert_eq!("rul@v3".parse::<ModelRef>().unwrap(), ModelRef { name: "rul".into(), version: Some(3) });
    }

    #[test]
    fn a_half_written_version_is_not_seen() {
        let dir = tempfile::tempdir().unwrap();
        let reg = ModelRegistry::new(dir.path());
        reg.register("rul", "json", b"{}", meta(1.0), 1).unwrap();
        fs::create_dir_all(dir.path().join("rul/.tmp-v2-1")).unwrap();
        assert_eq!(reg.versions("rul").unwrap().len(), 1);
        assert_eq!(reg.register("rul", "json", b"{}", meta(1.0), 2).unwrap().version, 2);
    }
}
