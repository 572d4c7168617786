//! A checkpoint being written: blob writers, and the commit that writes the manifest.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::codec::{encode_into, StateCodecError};
use super::completed::CompletedCheckpoint;
use super::error::{CheckpointError, IoContext};
use super::key_groups::MAX_KEY_GROUPS;
use super::manifest::{
    BlobEntry, BlobName, CheckpointMeta, Manifest, MANIFEST_FILE, MANIFEST_FORMAT_VERSION,
    MANIFEST_TMP,
};
use super::shared::{sync_dir, Shared};

/// Buffer between a [`BlobWriter`] and its file.
const WRITE_BUFFER: usize = 256 * 1024;

/// A checkpoint being written: blobs go in through [`put`](Self::put),
/// [`put_state`](Self::put_state) or [`writer`](Self::writer), then [`commit`](Self::commit)
/// makes it complete. Dropped without a commit, it stays a partial directory that retention
/// removes later; [`abort`](Self::abort) deletes its blobs at once.
///
/// It is `Send` and `Sync`, and the writers it hands out are independent of it (each owns its
/// file), so the instances of a job can write their blobs from their own threads.
#[derive(Debug)]
pub struct PendingCheckpoint {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    id: u64,
    path: PathBuf,
    blobs: Mutex<Blobs>,
}

/// The blobs of a pending checkpoint.
#[derive(Debug, Default)]
struct Blobs {
    /// Every name a writer was created for.
    names: HashSet<BlobName>,
    /// The finished blobs.
    done: Vec<BlobEntry>,
    /// Writers created (index of the next blob file).
    created: usize,
}

impl Inner {
    fn blobs(&self) -> MutexGuard<'_, Blobs> {
        // Every update under this lock is a single insert or push: a poisoned table is whole.
        self.blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.done_writing(self.id);
    }
}

impl PendingCheckpoint {
    pub(crate) fn new(shared: Arc<Shared>, id: u64, path: PathBuf) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared,
                id,
                path,
                blobs: Mutex::new(Blobs::default()),
            }),
        }
    }

    /// The checkpoint's id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The checkpoint's directory, `chk-<id>/`.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A writer for the blob `name`, for state too large to build in memory first. Its bytes
    /// count only once [`BlobWriter::finish`] returns.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::DuplicateBlob`] if this checkpoint already has a blob of that name;
    /// [`CheckpointError::Io`] if the file cannot be created.
    pub fn writer(&self, name: &BlobName) -> Result<BlobWriter, CheckpointError> {
        let file_name = {
            let mut blobs = self.inner.blobs();
            if !blobs.names.insert(name.clone()) {
                return Err(CheckpointError::DuplicateBlob {
                    checkpoint: self.inner.id,
                    name: name.clone(),
                });
            }
            blobs.created += 1;
            name.file_name(blobs.created - 1)
        };
        let path = self.inner.path.join(&file_name);
        let file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .ctx("create the checkpoint blob", &path)
        {
            Ok(file) => file,
            Err(e) => {
                // The name is free again; the file index stays used, which is harmless.
                self.inner.blobs().names.remove(name);
                return Err(e);
            }
        };
        Ok(BlobWriter {
            pending: Arc::clone(&self.inner),
            name: name.clone(),
            file_name,
            path,
            out: BufWriter::with_capacity(
                WRITE_BUFFER,
                Summing {
                    file,
                    hasher: crc32fast::Hasher::new(),
                    len: 0,
                },
            ),
        })
    }

    /// Writes the blob `name` holding `bytes`.
    ///
    /// # Errors
    ///
    /// As [`writer`](Self::writer), and [`CheckpointError::Io`] if writing or the fsync fails.
    pub fn put(&self, name: &BlobName, bytes: &[u8]) -> Result<(), CheckpointError> {
        let mut writer = self.writer(name)?;
        let path = writer.path.clone();
        writer
            .write_all(bytes)
            .ctx("write the checkpoint blob", &path)?;
        writer.finish()?;
        Ok(())
    }

    /// Writes the blob `name` holding `state` in the [state encoding](super::encode), streamed
    /// to the file.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), and [`CheckpointError::State`] if serde refuses the value.
    pub fn put_state<T: Serialize + ?Sized>(
        &self,
        name: &BlobName,
        state: &T,
    ) -> Result<(), CheckpointError> {
        let mut writer = self.writer(name)?;
        let path = writer.path.clone();
        encode_into(state, &mut writer).map_err(|e| match e {
            StateCodecError::Io(source) => CheckpointError::Io {
                action: "write the checkpoint blob",
                path: path.clone(),
                source,
            },
            source => CheckpointError::State {
                path: path.clone(),
                source,
            },
        })?;
        writer.finish()?;
        Ok(())
    }

    /// Commits the checkpoint: makes its blobs' directory entries durable, then writes the
    /// manifest (to a temporary file, fsync, rename, fsync of the directory), then applies
    /// retention. When this returns `Ok`, the checkpoint survives a crash.
    ///
    /// The returned handle reads it back and keeps retention from deleting it while it lives.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::BlobsOpen`] if a writer was not finished;
    /// [`CheckpointError::InvalidMeta`] if `max_parallelism` is outside `1..=32768`;
    /// [`CheckpointError::UnknownInstance`] if a blob's operator is not in `meta` or its
    /// instance is beyond the operator's parallelism; [`CheckpointError::Io`] if a write,
    /// rename or fsync fails. The checkpoint then stays partial.
    pub fn commit(self, meta: CheckpointMeta) -> Result<CompletedCheckpoint, CheckpointError> {
        let inner = &self.inner;
        let id = inner.id;
        if !(1..=MAX_KEY_GROUPS).contains(&meta.max_parallelism) {
            return Err(CheckpointError::InvalidMeta(
                "max_parallelism must be in 1..=32768",
            ));
        }
        let mut blobs = {
            let blobs = inner.blobs();
            let open = blobs.names.len() - blobs.done.len();
            if open > 0 {
                return Err(CheckpointError::BlobsOpen {
                    checkpoint: id,
                    open,
                });
            }
            blobs.done.clone()
        };
        for blob in &blobs {
            let parallelism = meta.parallelism(blob.name.operator());
            if parallelism.is_none_or(|p| blob.name.instance() >= p) {
                return Err(CheckpointError::UnknownInstance {
                    checkpoint: id,
                    name: blob.name.clone(),
                    parallelism,
                });
            }
        }
        blobs.sort_by(|a, b| a.name.cmp(&b.name));
        let manifest = Manifest {
            format: MANIFEST_FORMAT_VERSION,
            checkpoint: id,
            fingerprint: meta.fingerprint,
            max_parallelism: meta.max_parallelism,
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            operators: meta.operators,
            blobs,
        };

        // The blobs' entries in chk-<id>/, and chk-<id>/'s entry in the store's directory.
        sync_dir(&inner.path)?;
        sync_dir(&inner.shared.dir)?;
        let tmp = inner.path.join(MANIFEST_TMP);
        let mut file = File::create(&tmp).ctx("create the manifest", &tmp)?;
        file.write_all(&manifest.to_bytes())
            .ctx("write the manifest", &tmp)?;
        file.sync_all().ctx("fsync the manifest", &tmp)?;
        drop(file);
        let target = inner.path.join(MANIFEST_FILE);
        fs::rename(&tmp, &target).ctx("rename the manifest into place at", &target)?;
        // The rename itself: without this the checkpoint could vanish in a crash.
        sync_dir(&inner.path)?;

        let completed =
            CompletedCheckpoint::new(Arc::clone(&inner.shared), id, inner.path.clone(), manifest);
        let shared = Arc::clone(&inner.shared);
        drop(self);
        shared.retain_after(id);
        Ok(completed)
    }

    /// Abandons the checkpoint and deletes its blobs at once. The empty directory stays, as a
    /// partial checkpoint, until a later commit's retention passes it: it holds the id, so a
    /// store reopened after a crash does not hand the id out again.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Io`] if a blob cannot be deleted (retention removes it later).
    pub fn abort(self) -> Result<(), CheckpointError> {
        let path = self.inner.path.clone();
        drop(self);
        for entry in fs::read_dir(&path).ctx("list the abandoned checkpoint", &path)? {
            let file = entry.ctx("list the abandoned checkpoint", &path)?.path();
            fs::remove_file(&file).ctx("delete the abandoned blob", &file)?;
        }
        Ok(())
    }
}

/// Writes one blob, summing its length and checksum as the bytes pass; buffered.
/// [`finish`](Self::finish) fsyncs it and adds it to its checkpoint; a writer dropped unfinished
/// leaves its checkpoint unable to commit.
#[derive(Debug)]
pub struct BlobWriter {
    pending: Arc<Inner>,
    name: BlobName,
    file_name: String,
    path: PathBuf,
    out: BufWriter<Summing>,
}

impl BlobWriter {
    /// The blob's name.
    pub fn name(&self) -> &BlobName {
        &self.name
    }

    /// Flushes the blob, fsyncs it and records it in its checkpoint. Returns its length.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Io`] if the flush or the fsync fails; the checkpoint then cannot
    /// commit.
    pub fn finish(self) -> Result<u64, CheckpointError> {
        let Self {
            pending,
            name,
            file_name,
            path,
            out,
        } = self;
        let summing = out
            .into_inner()
            .map_err(|e| e.into_error())
            .ctx("write the checkpoint blob", &path)?;
        summing
            .file
            .sync_all()
            .ctx("fsync the checkpoint blob", &path)?;
        let len = summing.len;
        pending.blobs().done.push(BlobEntry {
            name,
            file: file_name,
            len,
            crc32: summing.hasher.finalize(),
        });
        Ok(len)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A file that sums the length and checksum of what is written to it.
#[derive(Debug)]
struct Summing {
    file: File,
    hasher: crc32fast::Hasher,
    len: u64,
}

impl Write for Summing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
