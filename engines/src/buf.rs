//! Engine-owned I/O buffers: aligned memory from a bounded pool, no allocation per I/O.

/// A buffer whose start is aligned to the pool's alignment (for O_DIRECT), with a length that
/// can be set up to its capacity. Built on a plain boxed slice over-allocated by the alignment,
/// so it needs no `unsafe`: the aligned window is a sub-slice.
#[derive(Debug)]
pub struct AlignedBuf {
    raw: Box<[u8]>,
    start: usize,
    cap_bytes: usize,
    len_bytes: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of capacity `cap_bytes` whose first byte is aligned to `align_bytes`
    /// (a power of two).
    pub fn new(cap_bytes: usize, align_bytes: usize) -> AlignedBuf {
        let align_bytes = align_bytes.max(1);
        let raw = vec![0u8; cap_bytes + align_bytes].into_boxed_slice();
        let misalign = raw.as_ptr() as usize % align_bytes;
        let start = if misalign == 0 {
            0
        } else {
            align_bytes - misalign
        };
        AlignedBuf {
            raw,
            start,
            cap_bytes,
            len_bytes: cap_bytes,
        }
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.cap_bytes
    }

    /// Current length in bytes (what `as_ref` shows and a write transfers).
    pub fn len(&self) -> usize {
        self.len_bytes
    }

    /// Whether the length is zero.
    pub fn is_empty(&self) -> bool {
        self.len_bytes == 0
    }

    /// Set the length (clamped to the capacity).
    pub fn set_len(&mut self, len_bytes: usize) {
        self.len_bytes = len_bytes.min(self.cap_bytes);
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len_bytes]
    }
}

impl AsMut<[u8]> for AlignedBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len_bytes]
    }
}

/// Alignment of I/O buffers for an engine whose I/O needs `io_align_bytes`: at least a page
/// (4096) for direct I/O, as fio does — a 4 KiB buffer that straddles two pages costs the block
/// layer two segments per I/O — and a cache line otherwise.
pub fn buffer_align_bytes(io_align_bytes: usize) -> usize {
    if io_align_bytes > 1 {
        io_align_bytes.max(4096)
    } else {
        64
    }
}

/// A bounded pool of [`AlignedBuf`]s of one capacity. Buffers are created lazily up to
/// `max_count` and reused after [`release`](BufPool::release); nothing is allocated once the
/// pool has warmed up.
#[derive(Debug)]
pub struct BufPool {
    free: Vec<AlignedBuf>,
    live: usize,
    max_count: usize,
    cap_bytes: usize,
    align_bytes: usize,
}

impl BufPool {
    /// A pool of at most `max_count` buffers of `cap_bytes`, aligned to `align_bytes`.
    pub fn new(max_count: usize, cap_bytes: usize, align_bytes: usize) -> BufPool {
        BufPool {
            free: Vec::with_capacity(max_count),
            live: 0,
            max_count,
            cap_bytes,
            align_bytes,
        }
    }

    /// A buffer of length `len_bytes`; `None` when `len_bytes` exceeds the capacity or every
    /// buffer is out.
    pub fn alloc(&mut self, len_bytes: usize) -> Option<AlignedBuf> {
        if len_bytes > self.cap_bytes {
            return None;
        }
        let mut buf = match self.free.pop() {
            Some(b) => b,
            None if self.live < self.max_count => {
                self.live += 1;
                AlignedBuf::new(self.cap_bytes, self.align_bytes)
            }
            None => return None,
        };
        buf.set_len(len_bytes);
        Some(buf)
    }

    /// Return a buffer. Buffers of another capacity (not from this pool) are dropped.
    pub fn release(&mut self, buf: AlignedBuf) {
        if buf.capacity() == self.cap_bytes && self.free.len() < self.live {
            self.free.push(buf);
        }
    }

    /// Buffers currently handed out.
    pub fn outstanding(&self) -> usize {
        self.live - self.free.len()
    }

    /// Capacity of each buffer.
    pub fn buf_bytes(&self) -> usize {
        self.cap_bytes
    }

    /// Most buffers the pool hands out at once.
    pub fn max_count(&self) -> usize {
        self.max_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_sized() {
        for align in [1, 512, 4096] {
            let mut b = AlignedBuf::new(8192, align);
            assert_eq!(b.as_ref().as_ptr() as usize % align, 0);
            assert_eq!(b.len(), 8192);
            b.set_len(100);
            assert_eq!(b.as_mut().len(), 100);
            b.set_len(1 << 20);
            assert_eq!(b.len(), 8192);
        }
    }

    #[test]
    fn pool_is_bounded_and_reuses() {
        let mut p = BufPool::new(2, 4096, 4096);
        let a = p.alloc(4096).unwrap();
        let b = p.alloc(10).unwrap();
        assert!(p.alloc(1).is_none(), "pool of 2 handed out a third buffer");
        assert!(p.alloc(8192).is_none());
        assert_eq!(p.outstanding(), 2);
        let pa = a.as_ref().as_ptr();
        p.release(a);
        let c = p.alloc(7).unwrap();
        assert_eq!(c.as_ref().as_ptr(), pa, "released buffer not reused");
        assert_eq!(c.len(), 7);
        p.release(b);
        p.release(c);
        assert_eq!(p.outstanding(), 0);
    }
}
