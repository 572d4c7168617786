//! Blob names, the metadata a commit records, and the manifest file (JSON, then a CRC-32
//! line; the layout is in the [module header](super)).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The version of the manifest this release writes and reads.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// The manifest's file name inside `chk-<id>/`.
pub(crate) const MANIFEST_FILE: &str = "_manifest";
/// The manifest's name while it is written.
pub(crate) const MANIFEST_TMP: &str = "_manifest.tmp";
/// Bytes of the checksum line: `"crc32 "`, 8 hex digits, `'\n'`.
const TRAILER: usize = 15;
/// Bytes of an operator name kept in a blob's file name.
const FILE_NAME_OPERATOR: usize = 48;

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BlobKind {
    /// An operator instance's state (for a keyed operator, its key-group range's).
    State,
    /// A source instance's position: where it resumes.
    SourcePosition,
    /// The batches queued on one input edge of an instance that an unaligned barrier
    /// overtook, replayed into that input on restore.
    InFlight {
        /// The input edge, numbered as the instance numbers its inputs.
        input: u32,
    },
}

/// The name of one blob in a checkpoint: what it holds, for which operator instance.
///
/// ```
/// use weir_runtime::checkpoint::BlobName;
///
/// let name = BlobName::in_flight("window count", 3, 1);
/// assert_eq!(name.to_string(), "in-flight data of input 1 of \"window count\"[3]");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobName {
    operator: String,
    instance: u32,
    kind: BlobKind,
}

impl BlobName {
    /// A blob of `kind` for `operator`'s instance `instance`.
    pub fn new(operator: impl Into<String>, instance: u32, kind: BlobKind) -> Self {
        Self {
            operator: operator.into(),
            instance,
            kind,
        }
    }

    /// The state of `operator`'s instance `instance`.
    pub fn state(operator: impl Into<String>, instance: u32) -> Self {
        Self::new(operator, instance, BlobKind::State)
    }

    /// The position of source `operator`'s instance `instance`.
    pub fn source_position(operator: impl Into<String>, instance: u32) -> Self {
        Self::new(operator, instance, BlobKind::SourcePosition)
    }

    /// The in-flight data of input `input` of `operator`'s instance `instance`.
    pub fn in_flight(operator: impl Into<String>, instance: u32, input: u32) -> Self {
        Self::new(operator, instance, BlobKind::InFlight { input })
    }

    /// The operator's name.
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// The instance index.
    pub fn instance(&self) -> u32 {
        self.instance
    }

    /// What the blob holds.
    pub fn kind(&self) -> BlobKind {
        self.kind
    }

    /// The file name of this blob as the `index`-th of its checkpoint: unique by the index, and
    /// readable.
    pub(crate) fn file_name(&self, index: usize) -> String {
        let kind = match self.kind {
            BlobKind::State => "state".to_string(),
            BlobKind::SourcePosition => "source".to_string(),
            BlobKind::InFlight { input } => format!("inflight-{input}"),
        };
        let operator: String = self
            .operator
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(FILE_NAME_OPERATOR)
            .collect();
        format!("{index:05}-{kind}-{}-{operator}", self.instance)
    }
}

impl fmt::Display for BlobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            BlobKind::State => write!(f, "state of {:?}[{}]", self.operator, self.instance),
            BlobKind::SourcePosition => {
                write!(f, "position of {:?}[{}]", self.operator, self.instance)
            }
            BlobKind::InFlight { input } => write!(
                f,
                "in-flight data of input {input} of {:?}[{}]",
                self.operator, self.instance
            ),
        }
    }
}

/// What a commit records about the job besides its blobs: the graph's fingerprint, the
/// maximum parallelism (key groups), and each operator's parallelism. A restore compares them
/// with the job it restores into, and redistributes keyed state when a parallelism changed.
///
/// ```
/// use weir_runtime::checkpoint::CheckpointMeta;
///
/// let meta = CheckpointMeta::new(0x5eed, 128).operator("source", 1).operator("count", 4);
/// assert_eq!(meta.parallelism("count"), Some(4));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointMeta {
    pub(crate) fingerprint: u64,
    pub(crate) max_parallelism: u32,
    pub(crate) operators: BTreeMap<String, u32>,
}

impl CheckpointMeta {
    /// Metadata of a job whose graph has `fingerprint` and whose keyed state is cut into
    /// `max_parallelism` key groups.
    pub fn new(fingerprint: u64, max_parallelism: u32) -> Self {
        Self {
            fingerprint,
            max_parallelism,
            operators: BTreeMap::new(),
        }
    }

    /// Records that operator `name` runs `parallelism` instances (replacing an earlier entry).
    pub fn operator(mut self, name: impl Into<String>, parallelism: u32) -> Self {
        self.operators.insert(name.into(), parallelism);
        self
    }

    /// The parallelism recorded for `name`.
    pub fn parallelism(&self, name: &str) -> Option<u32> {
        self.operators.get(name).copied()
    }
}

/// One blob as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlobEntry {
    pub(crate) name: BlobName,
    /// File name inside `chk-<id>/`.
    pub(crate) file: String,
    pub(crate) len: u64,
    pub(crate) crc32: u32,
}

/// The manifest's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) format: u32,
    pub(crate) checkpoint: u64,
    pub(crate) fingerprint: u64,
    pub(crate) max_parallelism: u32,
    /// Milliseconds since the Unix epoch when the checkpoint was committed (for people).
    pub(crate) created_unix_ms: u64,
    pub(crate) operators: BTreeMap<String, u32>,
    pub(crate) blobs: Vec<BlobEntry>,
}

impl Manifest {
    /// The manifest file's bytes: the JSON line, then `crc32 <hex>` over it.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("a manifest has string keys and no floats");
        out.push(b'\n');
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(format!("crc32 {crc:08x}\n").as_bytes());
        out
    }

    /// Parses a manifest file, checking its checksum and format version.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let split = bytes
            .len()
            .checked_sub(TRAILER)
            .ok_or_else(|| format!("{} bytes is too short for a manifest", bytes.len()))?;
        let (body, trailer) = bytes.split_at(split);
        let written = trailer
            .strip_prefix(b"crc32 ")
            .and_then(|t| t.strip_suffix(b"\n"))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .ok_or("the checksum line is missing or damaged")?;
        let actual = crc32fast::hash(body);
        if actual != written {
            return Err(format!(
                "checksum mismatch (manifest says {written:08x}, content sums to {actual:08x})"
            ));
        }
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let Format { format } =
            serde_json::from_slice(body).map_err(|e| format!("unreadable: {e}"))?;
        if format != MANIFEST_FORMAT_VERSION {
            return Err(format!(
                "format version {format}, this release reads version {MANIFEST_FORMAT_VERSION}"
            ));
        }
        serde_json::from_slice(body).map_err(|e| format!("unreadable: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT_VERSION,
            checkpoint: 7,
            fingerprint: u64::MAX - 3,
            max_parallelism: 128,
            created_unix_ms: 1,
            operators: [("count".to_string(), 2)].into(),
            blobs: vec![BlobEntry {
                name: BlobName::in_flight("a \"quoted\"/name", 1, 2),
                file: BlobName::in_flight("a \"quoted\"/name", 1, 2).file_name(0),
                len: 10,
                crc32: 0xdead_beef,
            }],
        }
    }

    #[test]
    fn a_manifest_round_trips_and_every_flipped_byte_is_caught() {
        let m = manifest();
        let bytes = m.to_bytes();
        assert_eq!(Manifest::from_bytes(&bytes), Ok(m));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                Manifest::from_bytes(&bad).is_err(),
                "flip at {i} not caught"
            );
        }
        assert!(Manifest::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(Manifest::from_bytes(b"").is_err());
    }

    #[test]
    fn another_format_version_is_refused_by_name() {
        let mut m = manifest();
        m.format = 2;
        let err = Manifest::from_bytes(&m.to_bytes()).expect_err("version 2");
        assert!(err.contains("format version 2"), "{err}");
    }

    #[test]
    fn file_names_are_unique_by_index_and_safe() {
        let name = BlobName::state("../../etc/passwd ü", 3);
        assert_eq!(name.file_name(12), "00012-state-3-______etc_passwd__");
        let long = BlobName::source_position("x".repeat(500), 0);
        assert!(long.file_name(0).len() < 80);
        assert_eq!(
            BlobName::in_flight("j", 0, 4).file_name(1),
            "00001-inflight-4-0-j"
        );
    }
}
