//! `--configDir`: manifests read from a directory tree, as a user would `kubectl apply`
//! them. Each scan yields the objects to apply and delete. A file that cannot be read
//! keeps its last good objects; an invalid object keeps its last good version.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use super::object::{Object, ObjectError, ObjectKey, Parsed, parse_document};

/// A problem to report, keyed so it can be shown once and cleared when fixed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// `Kind/namespace/name`, or the file path when no object could be identified.
    pub key: String,
    pub file: String,
    pub message: String,
}

/// What one scan changed.
#[derive(Debug, Default)]
pub struct ScanResult {
    pub applied: Vec<(ObjectKey, Object)>,
    pub deleted: Vec<ObjectKey>,
    /// Every problem currently present (not only new ones).
    pub errors: Vec<SourceError>,
    /// Whether anything changed on disk since the last scan.
    pub changed: bool,
}

struct FileState {
    content_hash: u64,
    /// Documents of the last version of the file that could be split into documents.
    documents: Vec<Result<Parsed, ObjectError>>,
    /// Set while the current content cannot be read as YAML.
    read_error: Option<String>,
}

pub struct FileSource {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// What has been handed out: key → (file, object).
    applied: BTreeMap<ObjectKey, (PathBuf, Object)>,
    /// Fingerprints of the last walk, to skip unchanged directories cheaply.
    fingerprints: BTreeMap<PathBuf, (std::time::SystemTime, u64)>,
}

impl FileSource {
    pub fn new(root: impl Into<PathBuf>) -> FileSource {
        FileSource {
            root: root.into(),
            files: BTreeMap::new(),
            applied: BTreeMap::new(),
            fingerprints: BTreeMap::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Cheap check: did any manifest's mtime or size change, or a file come or go?
    pub fn poll_changed(&self) -> bool {
        walk(&self.root) != self.fingerprints
    }

    /// Reads the tree and returns what changed since the last scan.
    pub fn scan(&mut self) -> ScanResult {
        let fingerprints = walk(&self.root);
        let changed = fingerprints != self.fingerprints;
        self.fingerprints = fingerprints;

        let present: BTreeSet<PathBuf> = self.fingerprints.keys().cloned().collect();
        self.files.retain(|path, _| present.contains(path));
        for path in &present {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            let hash = {
                let mut h = DefaultHasher::new();
                bytes.hash(&mut h);
                h.finish()
            };
            if self.files.get(path).is_some_and(|f| f.content_hash == hash) {
                continue;
            }
            let source = self.display(path);
            let state = match split_documents(&bytes) {
                Ok(docs) => FileState {
                    content_hash: hash,
                    documents: docs
                        .into_iter()
                        .map(|d| parse_document(d, &source))
                        .collect(),
                    read_error: None,
                },
                Err(message) => FileState {
                    content_hash: hash,
                    documents: self
                        .files
                        .remove(path)
                        .map(|old| old.documents)
                        .unwrap_or_default(),
                    read_error: Some(message),
                },
            };
            self.files.insert(path.clone(), state);
        }
        let mut result = self.reconcile();
        result.changed = changed;
        result
    }

    /// Computes the desired objects from every file's documents and diffs them against
    /// what was handed out before.
    fn reconcile(&mut self) -> ScanResult {
        let mut errors = Vec::new();
        let mut desired: BTreeMap<ObjectKey, (PathBuf, Object)> = BTreeMap::new();
        for (path, file) in &self.files {
            let source = self.display(path);
            if let Some(message) = &file.read_error {
                let suffix = if file.documents.is_empty() {
                    ""
                } else {
                    " (the last good version of this file keeps serving)"
                };
                errors.push(SourceError {
                    key: source.clone(),
                    file: source.clone(),
                    message: format!("{message}{suffix}"),
                });
            }
            for (index, doc) in file.documents.iter().enumerate() {
                match doc {
                    Ok(Parsed::Ignored) => {}
                    Ok(Parsed::Object(key, object)) => {
                        if let Some((other, _)) = desired.get(key) {
                            errors.push(SourceError {
                                key: key.to_string(),
                                file: source.clone(),
                                message: format!(
                                    "{key} is also defined in {}; this copy is ignored",
                                    self.display(other)
                                ),
                            });
                            continue;
                        }
                        desired.insert(key.clone(), (path.clone(), (**object).clone()));
                    }
                    Err(err) => {
                        let key = err
                            .key
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_else(|| format!("{source}#{index}"));
                        let kept = err.key.as_ref().and_then(|k| self.applied.get(k));
                        let suffix = if kept.is_some() {
                            " (the last good version keeps serving)"
                        } else {
                            ""
                        };
                        errors.push(SourceError {
                            key,
                            file: source.clone(),
                            message: format!("{}{suffix}", err.message),
                        });
                        if let (Some(k), Some(old)) = (&err.key, kept) {
                            desired.entry(k.clone()).or_insert_with(|| old.clone());
                        }
                    }
                }
            }
        }

        let mut result = ScanResult {
            errors,
            ..Default::default()
        };
        for key in self.applied.keys() {
            if !desired.contains_key(key) {
                result.deleted.push(key.clone());
            }
        }
        for (key, (_, object)) in &desired {
            let unchanged = self
                .applied
                .get(key)
                .is_some_and(|(_, old)| same_object(old, object));
            if !unchanged {
                result.applied.push((key.clone(), object.clone()));
            }
        }
        self.applied = desired;
        result
    }

    fn display(&self, path: &Path) -> String {
        path.display().to_string()
    }
}

fn same_object(a: &Object, b: &Object) -> bool {
    match (a, b) {
        (Object::Istio(a), Object::Istio(b)) => a == b,
        (Object::Kube(a), Object::Kube(b)) => format!("{a:?}") == format!("{b:?}"),
        _ => false,
    }
}

/// Splits a multi-document YAML (or JSON) file into JSON values; `kind: List` items
/// are expanded.
fn split_documents(bytes: &[u8]) -> Result<Vec<serde_json::Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut out = Vec::new();
    for de in serde_yaml::Deserializer::from_str(text) {
        let value: serde_yaml::Value =
            serde::Deserialize::deserialize(de).map_err(|e| e.to_string())?;
        if value.is_null() {
            continue;
        }
        let json: serde_json::Value =
            serde_json::to_value(&value).map_err(|e| format!("not representable as JSON: {e}"))?;
        if json.get("kind").and_then(|k| k.as_str()) == Some("List") {
            if let Some(items) = json.get("items").and_then(|i| i.as_array()) {
                out.extend(items.iter().cloned());
            }
            continue;
        }
        out.push(json);
    }
    Ok(out)
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Every manifest under `root` with its mtime and size. Hidden entries are skipped
/// (Kubernetes ConfigMap mounts keep old versions in `..data`-style hidden dirs).
fn walk(root: &Path) -> BTreeMap<PathBuf, (std::time::SystemTime, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if is_manifest(&path) {
                let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                out.insert(path, (mtime, meta.len()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [r], http: [{route: [{destination: {host: r, subset: v1}}]}]}\n";
    const VS_V2: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [r], http: [{route: [{destination: {host: r, subset: v2}}]}]}\n";
    const VS_BAD: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}, weight: x}]}]}\n";
    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: r}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80, name: http}]}\n";

    fn subset_of(result: &ScanResult) -> Option<String> {
        result.applied.iter().find_map(|(_, o)| match o {
            Object::Istio(crate::model::IstioConfig::VirtualService(vs)) => {
                Some(vs.spec.http[0].route[0].destination.subset.clone())
            }
            _ => None,
        })
    }

    #[test]
    fn applies_updates_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.yaml"), format!("{VS}---\n{SVC}")).unwrap();
        let mut src = FileSource::new(dir.path());
        let r = src.scan();
        assert_eq!(r.applied.len(), 2);
        assert!(r.errors.is_empty(), "{:?}", r.errors);

        // Nothing changed: nothing applied.
        assert!(src.scan().applied.is_empty());

        std::fs::write(dir.path().join("sub/a.yaml"), VS_V2).unwrap();
        let r = src.scan();
        assert_eq!(subset_of(&r).as_deref(), Some("v2"));
        assert_eq!(r.deleted.len(), 1, "the Service left the file");
        assert_eq!(r.deleted[0].kind, "Service");
    }

    #[test]
    fn invalid_object_keeps_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vs.yaml");
        std::fs::write(&file, VS).unwrap();
        let mut src = FileSource::new(dir.path());
        assert_eq!(src.scan().applied.len(), 1);
        std::fs::write(&file, VS_BAD).unwrap();
        let r = src.scan();
        assert!(r.applied.is_empty());
        assert!(r.deleted.is_empty());
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].key, "VirtualService/default/r");
        assert!(
            r.errors[0].message.contains("weight"),
            "{}",
            r.errors[0].message
        );
        assert!(r.errors[0].message.contains("last good"));
        // Fixing it applies the new version and clears the error.
        std::fs::write(&file, VS_V2).unwrap();
        let r = src.scan();
        assert_eq!(subset_of(&r).as_deref(), Some("v2"));
        assert!(r.errors.is_empty());
    }

    #[test]
    fn unparsable_file_keeps_its_objects() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vs.yaml");
        std::fs::write(&file, VS).unwrap();
        let mut src = FileSource::new(dir.path());
        src.scan();
        std::fs::write(&file, "kind: [unclosed\n").unwrap();
        let r = src.scan();
        assert!(r.deleted.is_empty());
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].key.ends_with("vs.yaml"));
        // Removing the file deletes its objects.
        std::fs::remove_file(&file).unwrap();
        let r = src.scan();
        assert_eq!(r.deleted.len(), 1);
        assert!(r.errors.is_empty());
    }

    #[test]
    fn duplicate_objects_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), VS).unwrap();
        std::fs::write(dir.path().join("b.yaml"), VS_V2).unwrap();
        let mut src = FileSource::new(dir.path());
        let r = src.scan();
        assert_eq!(r.applied.len(), 1);
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].message.contains("also defined"));
    }
}
