//! The chunk buffer pool shared by the chunker and the parse instances.
//!
//! The chunker takes a buffer for each chunk it cuts; a parse instance puts it back once the
//! chunk is parsed. The lock is taken once per chunk (not per row or batch of the output), and
//! the pool keeps at most [`ChunkPool::MAX`] buffers: a buffer not in the pool is freed.

/// Chunk buffers the parse instances have emptied, for the reader to fill again: the buffers
/// are reused instead of being allocated and freed per chunk.
#[derive(Debug, Default)]
pub(super) struct ChunkPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl ChunkPool {
    /// Buffers kept at most; more are freed.
    pub(super) const MAX: usize = 8;

    pub(super) fn put(&self, mut buf: Vec<u8>) {
        buf.clear();
        // A poisoned lock only means another instance panicked; the list is still valid.
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < Self::MAX {
            free.push(buf);
        }
    }

    /// An empty buffer with room for at least `capacity` bytes.
    pub(super) fn take(&self, capacity: usize) -> Vec<u8> {
        let found = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            free.pop()
        };
        match found {
            Some(mut buf) => {
                buf.reserve(capacity);
                buf
            }
            None => Vec::with_capacity(capacity),
        }
    }
}
