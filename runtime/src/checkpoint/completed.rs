//! A complete checkpoint: verifying one, reading its blobs back, and what
//! [`CheckpointStore::latest`](super::CheckpointStore::latest) skipped on the way.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::codec::decode;
use super::error::{CheckpointError, IoContext};
use super::key_groups::{restore_sources, KeyGroupRange};
use super::manifest::{BlobEntry, BlobKind, BlobName, Manifest, MANIFEST_FILE};
use super::shared::Shared;
use super::snapshot::SnapshotReader;

/// Chunk in which blobs are read to verify their checksums.
const VERIFY_CHUNK: usize = 1 << 20;

/// What [`CheckpointStore::latest`](super::CheckpointStore::latest) found.
#[derive(Debug)]
#[must_use = "a restore must look at what was skipped, not only at the checkpoint"]
pub struct Latest {
    /// The newest checkpoint that verified, if any.
    pub checkpoint: Option<CompletedCheckpoint>,
    /// The newer checkpoints passed over, newest first, with the reason for each.
    pub skipped: Vec<SkippedCheckpoint>,
}

/// A checkpoint [`CheckpointStore::latest`](super::CheckpointStore::latest) passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedCheckpoint {
    /// Its id.
    pub id: u64,
    /// Its directory.
    pub path: PathBuf,
    /// Why it was passed over.
    pub reason: SkipReason,
}

/// Why a checkpoint is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// There is no manifest: the checkpoint was never committed (a crash while it was
    /// written, or a deletion cut short).
    NoManifest,
    /// The manifest fails its checksum, cannot be parsed, is of another format version, or
    /// names another checkpoint.
    BadManifest(String),
    /// A blob the manifest lists is missing.
    MissingBlob {
        /// The blob's file name.
        file: String,
    },
    /// A blob is shorter (truncated) or longer than the manifest says.
    WrongLength {
        /// The blob's file name.
        file: String,
        /// Its length in the manifest.
        expected: u64,
        /// Its length on disk.
        found: u64,
    },
    /// A blob's content does not match its checksum.
    BadChecksum {
        /// The blob's file name.
        file: String,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoManifest => f.write_str("no manifest: the checkpoint was never committed"),
            Self::BadManifest(why) => write!(f, "the manifest is damaged: {why}"),
            Self::MissingBlob { file } => write!(f, "blob {file} is missing"),
            Self::WrongLength {
                file,
                expected,
                found,
            } => write!(
                f,
                "blob {file} is {found} bytes, the manifest says {expected}{}",
                if found < expected { " (truncated)" } else { "" }
            ),
            Self::BadChecksum { file } => write!(f, "blob {file} fails its checksum"),
        }
    }
}

/// Verifies checkpoint `id` in `path`: `Ok(Ok(manifest))` if it is complete and intact,
/// `Ok(Err(reason))` if it is partial or damaged, `Err` for an I/O failure that says nothing
/// about the checkpoint (permission denied, say).
pub(crate) fn verify(
    path: &Path,
    id: u64,
) -> Result<Result<Manifest, SkipReason>, CheckpointError> {
    let manifest_path = path.join(MANIFEST_FILE);
    let bytes = match fs::read(&manifest_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(SkipReason::NoManifest)),
        Err(e) => return Err(e).ctx("read the manifest", &manifest_path),
    };
    let manifest = match Manifest::from_bytes(&bytes) {
        Ok(m) => m,
        Err(why) => return Ok(Err(SkipReason::BadManifest(why))),
    };
    if manifest.checkpoint != id {
        return Ok(Err(SkipReason::BadManifest(format!(
            "it names checkpoint {} in the directory of checkpoint {id}",
            manifest.checkpoint
        ))));
    }
    let mut buf = vec![0u8; VERIFY_CHUNK];
    for blob in &manifest.blobs {
        if !is_plain_file_name(&blob.file) {
            return Ok(Err(SkipReason::BadManifest(format!(
                "blob file name {:?} is not a plain file name",
                blob.file
            ))));
        }
        if let Err(reason) = check_blob(&path.join(&blob.file), blob, &mut buf)? {
            return Ok(Err(reason));
        }
    }
    Ok(Ok(manifest))
}

/// A name of a file directly inside the checkpoint's directory.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && name != MANIFEST_FILE
}

/// Checks one blob's length and checksum, reading it through `buf`.
fn check_blob(
    path: &Path,
    blob: &BlobEntry,
    buf: &mut [u8],
) -> Result<Result<(), SkipReason>, CheckpointError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Err(SkipReason::MissingBlob {
                file: blob.file.clone(),
            }))
        }
        Err(e) => return Err(e).ctx("open the checkpoint blob", path),
    };
    let mut hasher = crc32fast::Hasher::new();
    let mut len = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).ctx("read the checkpoint blob", path),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    if len != blob.len {
        return Ok(Err(SkipReason::WrongLength {
            file: blob.file.clone(),
            expected: blob.len,
            found: len,
        }));
    }
    if hasher.finalize() != blob.crc32 {
        return Ok(Err(SkipReason::BadChecksum {
            file: blob.file.clone(),
        }));
    }
    Ok(Ok(()))
}

/// A committed checkpoint: its metadata and its blobs. While it lives, retention does not
/// delete it.
#[derive(Debug)]
pub struct CompletedCheckpoint {
    shared: Arc<Shared>,
    id: u64,
    path: PathBuf,
    manifest: Manifest,
    index: HashMap<BlobName, usize>,
}

impl CompletedCheckpoint {
    /// A handle on checkpoint `id`, pinning it.
    pub(crate) fn new(shared: Arc<Shared>, id: u64, path: PathBuf, manifest: Manifest) -> Self {
        shared.pin(id);
        Self::pinned(shared, id, path, manifest)
    }

    /// A handle on checkpoint `id`, which the caller has already pinned for it.
    pub(crate) fn pinned(shared: Arc<Shared>, id: u64, path: PathBuf, manifest: Manifest) -> Self {
        let index = manifest
            .blobs
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.clone(), i))
            .collect();
        Self {
            shared,
            id,
            path,
            manifest,
            index,
        }
    }

    /// The checkpoint's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Its directory, `chk-<id>/`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The job's graph fingerprint as committed.
    pub fn fingerprint(&self) -> u64 {
        self.manifest.fingerprint
    }

    /// The maximum parallelism (the number of key groups) as committed.
    pub fn max_parallelism(&self) -> u32 {
        self.manifest.max_parallelism
    }

    /// The parallelism of operator `name` as committed.
    pub fn parallelism(&self, name: &str) -> Option<u32> {
        self.manifest.operators.get(name).copied()
    }

    /// Every operator with its parallelism, by name.
    pub fn operators(&self) -> impl Iterator<Item = (&str, u32)> {
        self.manifest
            .operators
            .iter()
            .map(|(name, &p)| (name.as_str(), p))
    }

    /// The names of its blobs, in order.
    pub fn blobs(&self) -> impl Iterator<Item = &BlobName> {
        self.manifest.blobs.iter().map(|b| &b.name)
    }

    /// Whether it has a blob of this name.
    pub fn contains(&self, name: &BlobName) -> bool {
        self.index.contains_key(name)
    }

    /// The total length of its blobs.
    pub fn total_bytes(&self) -> u64 {
        self.manifest.blobs.iter().map(|b| b.len).sum()
    }

    /// Milliseconds since the Unix epoch when it was committed.
    pub fn created_unix_ms(&self) -> u64 {
        self.manifest.created_unix_ms
    }

    fn entry(&self, name: &BlobName) -> Result<&BlobEntry, CheckpointError> {
        self.index
            .get(name)
            .map(|&i| &self.manifest.blobs[i])
            .ok_or_else(|| CheckpointError::NoSuchBlob {
                checkpoint: self.id,
                name: name.clone(),
            })
    }

    /// The bytes of blob `name`, checked again against the manifest's length and checksum.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::NoSuchBlob`] if there is none; [`CheckpointError::Corrupt`] if it
    /// changed since it was verified; [`CheckpointError::Io`] if it cannot be read.
    pub fn read(&self, name: &BlobName) -> Result<Vec<u8>, CheckpointError> {
        let blob = self.entry(name)?;
        let path = self.path.join(&blob.file);
        let bytes = fs::read(&path).ctx("read the checkpoint blob", &path)?;
        if bytes.len() as u64 != blob.len {
            return Err(CheckpointError::Corrupt {
                reason: format!("{} bytes, the manifest says {}", bytes.len(), blob.len),
                path,
            });
        }
        if crc32fast::hash(&bytes) != blob.crc32 {
            return Err(CheckpointError::Corrupt {
                reason: "it fails its checksum".to_string(),
                path,
            });
        }
        Ok(bytes)
    }

    /// Reads blob `name` and decodes it as a `T` written by
    /// [`PendingCheckpoint::put_state`](super::PendingCheckpoint::put_state) or
    /// [`encode`](super::encode).
    ///
    /// # Errors
    ///
    /// As [`read`](Self::read), and [`CheckpointError::State`] if it does not decode as a `T`.
    pub fn read_state<T: DeserializeOwned>(&self, name: &BlobName) -> Result<T, CheckpointError> {
        let bytes = self.read(name)?;
        decode(&bytes).map_err(|source| CheckpointError::State {
            path: self
                .entry(name)
                .map_or_else(|_| self.path.clone(), |b| self.path.join(&b.file)),
            source,
        })
    }

    /// The state blobs instance `instance` of keyed operator `operator` restores from at
    /// `new_parallelism`, with the key groups to keep from each: the blobs of the old
    /// instances whose key-group range meets the new instance's (see
    /// [`restore_sources`](super::restore_sources)). An old instance that wrote no state blob
    /// is left out.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::UnknownOperator`] if the checkpoint does not record the operator;
    /// [`CheckpointError::KeyGroups`] if `new_parallelism` (or the recorded one) exceeds the
    /// maximum parallelism, or `instance >= new_parallelism`.
    pub fn state_sources(
        &self,
        operator: &str,
        instance: u32,
        new_parallelism: u32,
    ) -> Result<Vec<(BlobName, KeyGroupRange)>, CheckpointError> {
        let old = self
            .parallelism(operator)
            .ok_or_else(|| CheckpointError::UnknownOperator {
                checkpoint: self.id,
                operator: operator.to_string(),
            })?;
        let sources = restore_sources(self.max_parallelism(), old, new_parallelism, instance)?;
        Ok(sources
            .into_iter()
            .map(|s| {
                (
                    BlobName::new(operator, s.old_instance, BlobKind::State),
                    s.groups,
                )
            })
            .filter(|(name, _)| self.contains(name))
            .collect())
    }
}

impl CompletedCheckpoint {
    /// What instance `instance` of keyed operator `operator`, now at `new_parallelism`,
    /// restores: the key groups of its new range from the state blob of **every** old
    /// instance (a split key's partials may sit outside their owner's range), and the
    /// instance-wide state of the old instances whose range met its own (see
    /// [`SnapshotReader::from_sources`]). Each instance reads every old blob, so a restore
    /// reads `old × new` blobs of the operator.
    ///
    /// # Errors
    ///
    /// As [`state_sources`](Self::state_sources) and [`read`](Self::read), and
    /// [`CheckpointError::State`] if a blob does not decode.
    pub fn state_reader(
        &self,
        operator: &str,
        instance: u32,
        new_parallelism: u32,
    ) -> Result<SnapshotReader, CheckpointError> {
        let owners: Vec<u32> = self
            .state_sources(operator, instance, new_parallelism)?
            .into_iter()
            .map(|(name, _)| name.instance())
            .collect();
        let old = self.parallelism(operator).unwrap_or(0);
        let mut blobs = Vec::with_capacity(old as usize);
        for old_instance in 0..old {
            let name = BlobName::new(operator, old_instance, BlobKind::State);
            if self.contains(&name) {
                blobs.push((self.read(&name)?, owners.contains(&old_instance)));
            }
        }
        SnapshotReader::from_sources(
            self.max_parallelism(),
            new_parallelism,
            instance,
            self.id,
            blobs.iter().map(|(b, own)| (b.as_slice(), *own)),
        )
    }
}

impl Drop for CompletedCheckpoint {
    fn drop(&mut self) {
        self.shared.unpin(self.id);
    }
}
