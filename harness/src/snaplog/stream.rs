//! Reading SNAPLOG1 in pieces: an incremental frame verifier for replay reads, and the header
//! walk that rebuilds a log's keyframe index.
//!
//! [`FrameStream`] checks frames as the bytes arrive, in read buffers of any size: a frame
//! header or payload may be split across any number of `feed` calls. It starts at a frame
//! boundary (the first frame, or a keyframe's exact offset for a seek), so it never has to
//! resynchronise on a partial frame. Each frame is checked as [`check_log`](super::check_log)
//! checks it — header inside its block, magic, kind, length, CRC-32C, payload match id and seq —
//! plus the sequence: seq numbers follow on without gaps from the starting frame's. Padding
//! must be zero. A stream started at the first frame also checks the end frame's counts.
//!
//! [`index_log`] walks a whole log from frame header to frame header (no CRCs, no payloads):
//! cheap enough to rebuild the keyframe index of logs a run did not write. Damage it does not
//! look at is found by the verifier when the bytes are read.

use super::{
    crc32c, decode_file_header, FrameKind, BLOCK_BYTES, END_PAYLOAD_BYTES, FRAME_HEADER_BYTES,
    FRAME_MAGIC, MAX_PAYLOAD_BYTES, MIN_PAYLOAD_BYTES,
};

const BLOCK_U64: u64 = BLOCK_BYTES as u64;
const HEADER_U64: u64 = FRAME_HEADER_BYTES as u64;

/// A verification failure: the file offset of the frame (or byte) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    /// File offset, in bytes, of the bad frame's header (or of the bad byte in padding).
    pub offset: u64,
    /// One-line description.
    pub why: String,
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "offset {}: {}", self.offset, self.why)
    }
}

/// Where a [`FrameStream`] is after a `feed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamStatus {
    /// Every byte so far is valid; more may follow.
    More,
    /// A valid end frame was read: the log is complete (bytes fed after it are ignored).
    Ended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a frame boundary: the next bytes are a header or padding.
    Between,
    /// Collecting a frame header (`hdr_len` bytes so far).
    Header,
    /// Inside a payload.
    Payload,
    /// Zero padding up to this offset.
    Padding(u64),
    /// After a valid end frame.
    Ended,
}

/// One valid data frame as the stream saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamFrame {
    /// File offset of its header.
    pub offset: u64,
    /// Sequence number.
    pub seq: u64,
    /// Intended arrival time, ns.
    pub t_ns: u64,
    /// Kind.
    pub kind: FrameKind,
}

/// Incremental verifier of one match log's frames (see the [module documentation](self)).
/// Fixed size, no allocation.
#[derive(Clone, Debug)]
pub struct FrameStream {
    match_id: u64,
    pos: u64,
    next_seq: u64,
    /// Frames and payload bytes since the first frame, when the stream started there.
    counts: Option<(u64, u64)>,
    state: State,
    hdr: [u8; FRAME_HEADER_BYTES],
    hdr_len: usize,
    frame_off: u64,
    len: u32,
    seq: u64,
    t_ns: u64,
    kind: FrameKind,
    stored_crc: u32,
    crc: u32,
    got: u32,
    head: [u8; 16],
    first: Option<StreamFrame>,
    last: Option<StreamFrame>,
    frames: u64,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl FrameStream {
    /// A stream of match `match_id`'s frames whose first frame header is at file offset
    /// `start_offset` with seq `start_seq` (the first frame: [`BLOCK_BYTES`] and 0; a keyframe:
    /// its index entry).
    pub fn new(match_id: u64, start_offset: u64, start_seq: u64) -> FrameStream {
        FrameStream {
            match_id,
            pos: start_offset,
            next_seq: start_seq,
            counts: (start_offset == BLOCK_U64 && start_seq == 0).then_some((0, 0)),
            state: State::Between,
            hdr: [0; FRAME_HEADER_BYTES],
            hdr_len: 0,
            frame_off: start_offset,
            len: 0,
            seq: 0,
            t_ns: 0,
            kind: FrameKind::Delta,
            stored_crc: 0,
            crc: 0,
            got: 0,
            head: [0; 16],
            first: None,
            last: None,
            frames: 0,
        }
    }

    /// File offset of the next byte the stream expects.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Whether the stream stands between frames (not inside a header, payload or padding).
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Between | State::Ended)
    }

    /// Whether a valid end frame was read.
    pub fn ended(&self) -> bool {
        self.state == State::Ended
    }

    /// The first valid data frame, if any.
    pub fn first_frame(&self) -> Option<StreamFrame> {
        self.first
    }

    /// The last valid data frame, if any.
    pub fn last_frame(&self) -> Option<StreamFrame> {
        self.last
    }

    /// Valid data frames seen.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    fn err(&self, offset: u64, why: String) -> StreamError {
        StreamError { offset, why }
    }

    /// Check `bytes`, which are the file's bytes from [`pos`](FrameStream::pos) on. On error
    /// the stream is left where the problem is; do not feed it again.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<StreamStatus, StreamError> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Ended => return Ok(StreamStatus::Ended),
                State::Between => {
                    let left = BLOCK_U64 - self.pos % BLOCK_U64;
                    if left < HEADER_U64 {
                        self.state = State::Padding(self.pos + left);
                    } else {
                        self.state = State::Header;
                        self.hdr_len = 0;
                        self.frame_off = self.pos;
                    }
                }
                State::Padding(until) => {
                    let n = ((until - self.pos) as usize).min(bytes.len() - i);
                    if let Some(j) = bytes[i..i + n].iter().position(|&b| b != 0) {
                        let at = self.pos + j as u64;
                        return Err(self.err(at, format!("non-zero byte at {at} in padding")));
                    }
                    i += n;
                    self.pos += n as u64;
                    if self.pos == until {
                        self.state = State::Between;
                    }
                }
                State::Header => {
                    let n = (FRAME_HEADER_BYTES - self.hdr_len).min(bytes.len() - i);
                    self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&bytes[i..i + n]);
                    self.hdr_len += n;
                    i += n;
                    self.pos += n as u64;
                    if self.hdr_len >= 4 && le_u32(&self.hdr, 0) == 0 {
                        // A zero word where a header could start: padding to the next block.
                        if let Some(j) = self.hdr[..self.hdr_len].iter().position(|&b| b != 0) {
                            let at = self.frame_off + j as u64;
                            return Err(self.err(at, format!("non-zero byte at {at} in padding")));
                        }
                        let end = (self.frame_off / BLOCK_U64 + 1) * BLOCK_U64;
                        self.state = if self.pos == end {
                            State::Between
                        } else {
                            State::Padding(end)
                        };
                        continue;
                    }
                    if self.hdr_len == FRAME_HEADER_BYTES {
                        self.parse_header()?;
                    }
                }
                State::Payload => {
                    let n = ((self.len - self.got) as usize).min(bytes.len() - i);
                    let chunk = &bytes[i..i + n];
                    self.crc = ::crc32c::crc32c_append(self.crc, chunk);
                    let g = self.got as usize;
                    if g < 16 {
                        let k = (16 - g).min(n);
                        self.head[g..g + k].copy_from_slice(&chunk[..k]);
                    }
                    self.got += n as u32;
                    i += n;
                    self.pos += n as u64;
                    if self.got == self.len {
                        self.finish_frame()?;
                    }
                }
            }
        }
        Ok(if self.state == State::Ended {
            StreamStatus::Ended
        } else {
            StreamStatus::More
        })
    }

    fn parse_header(&mut self) -> Result<(), StreamError> {
        let h = &self.hdr;
        let at = self.frame_off;
        let magic = le_u32(h, 0);
        if magic != FRAME_MAGIC {
            return Err(self.err(at, format!("bad frame magic {magic:#010x}")));
        }
        let len = le_u32(h, 4);
        let kind_raw = le_u32(h, 24);
        let Some(kind) = FrameKind::from_u32(kind_raw) else {
            return Err(self.err(at, format!("unknown frame kind {kind_raw}")));
        };
        let len_ok = match kind {
            FrameKind::End => len == END_PAYLOAD_BYTES,
            _ => (MIN_PAYLOAD_BYTES..=MAX_PAYLOAD_BYTES).contains(&len),
        };
        if !len_ok {
            return Err(self.err(
                at,
                format!("frame payload of {len} bytes is illegal for kind {kind_raw}"),
            ));
        }
        let seq = le_u64(h, 8);
        if seq != self.next_seq {
            return Err(self.err(at, format!("frame seq {seq}, expected {}", self.next_seq)));
        }
        self.len = len;
        self.seq = seq;
        self.t_ns = le_u64(h, 16);
        self.kind = kind;
        self.stored_crc = le_u32(h, 28);
        self.crc = crc32c(&h[0..28]);
        self.got = 0;
        self.state = State::Payload;
        Ok(())
    }

    fn finish_frame(&mut self) -> Result<(), StreamError> {
        let at = self.frame_off;
        if self.crc != self.stored_crc {
            return Err(self.err(
                at,
                format!(
                    "frame crc {:#010x}, computed {:#010x}",
                    self.stored_crc, self.crc
                ),
            ));
        }
        let first = le_u64(&self.head, 0);
        let second = le_u64(&self.head, 8);
        match self.kind {
            FrameKind::Delta | FrameKind::Keyframe => {
                if first != self.match_id {
                    return Err(self.err(
                        at,
                        format!(
                            "frame payload match id {first:#x}, expected {:#x}",
                            self.match_id
                        ),
                    ));
                }
                if second != self.seq {
                    return Err(self.err(
                        at,
                        format!("frame payload seq {second}, header {}", self.seq),
                    ));
                }
                if let Some((frames, payload)) = self.counts.as_mut() {
                    *frames += 1;
                    *payload += u64::from(self.len);
                }
                self.frames += 1;
                let frame = StreamFrame {
                    offset: at,
                    seq: self.seq,
                    t_ns: self.t_ns,
                    kind: self.kind,
                };
                self.first.get_or_insert(frame);
                self.last = Some(frame);
                self.next_seq += 1;
                self.state = State::Between;
            }
            FrameKind::End => {
                if let Some((frames, payload)) = self.counts {
                    if first != frames || second != payload {
                        return Err(self.err(
                            at,
                            format!("end frame counts {first} frames / {second} bytes, log has {frames} / {payload}"),
                        ));
                    }
                } else if first != self.seq {
                    return Err(self.err(
                        at,
                        format!("end frame counts {first} frames, its seq is {}", self.seq),
                    ));
                }
                self.state = State::Ended;
            }
        }
        Ok(())
    }
}

/// Checks a file header block read back (`bytes` holds at least its first [`BLOCK_BYTES`]) and
/// that it names `match_id`.
pub fn check_header_block(bytes: &[u8], match_id: u64) -> Result<(), StreamError> {
    match decode_file_header(bytes) {
        Some((id, _)) if id == match_id => Ok(()),
        Some((id, _)) => Err(StreamError {
            offset: 8,
            why: format!("file header match id {id:016x}, expected {match_id:016x}"),
        }),
        None => Err(StreamError {
            offset: 0,
            why: "bad file header (magic, crc, block size or zero area)".to_string(),
        }),
    }
}

/// A keyframe of a log's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// File offset of the keyframe's header.
    pub offset: u64,
    /// Its seq.
    pub seq: u64,
    /// Its intended arrival time, ns.
    pub t_ns: u64,
}

/// What [`index_log`] finds in a sealed log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogIndex {
    /// Match id of the file header.
    pub match_id: u64,
    /// Every keyframe, in file order.
    pub keyframes: Vec<KeyEntry>,
    /// File offset just after the end frame.
    pub data_end: u64,
    /// Data frames before the end frame.
    pub frames: u64,
    /// Time of the last frame (the end frame's), ns.
    pub last_t_ns: u64,
}

/// Rebuild the keyframe index of a sealed log by walking its frame headers (no CRCs, no
/// payloads: the verifier checks those when the bytes are read). An error names the offset of
/// the first header that breaks the structure, or says the log has no end frame.
pub fn index_log(bytes: &[u8], expected_match_id: u64) -> Result<LogIndex, StreamError> {
    check_header_block(bytes, expected_match_id)?;
    let n = bytes.len() as u64;
    let mut p = BLOCK_U64;
    let mut out = LogIndex {
        match_id: expected_match_id,
        keyframes: Vec::new(),
        data_end: 0,
        frames: 0,
        last_t_ns: 0,
    };
    let bad = |offset: u64, why: String| Err(StreamError { offset, why });
    loop {
        if p + HEADER_U64 > n {
            return bad(p, "no end frame: the log is not sealed".to_string());
        }
        let left = BLOCK_U64 - p % BLOCK_U64;
        let at = p as usize;
        if left < HEADER_U64 || le_u32(bytes, at) == 0 {
            p = (p / BLOCK_U64 + 1) * BLOCK_U64;
            continue;
        }
        let h = &bytes[at..at + FRAME_HEADER_BYTES];
        if le_u32(h, 0) != FRAME_MAGIC {
            return bad(p, format!("bad frame magic {:#010x}", le_u32(h, 0)));
        }
        let len = u64::from(le_u32(h, 4));
        let seq = le_u64(h, 8);
        let t_ns = le_u64(h, 16);
        if seq != out.frames {
            return bad(p, format!("frame seq {seq}, expected {}", out.frames));
        }
        let end = p + HEADER_U64 + len;
        if end > n || len > u64::from(MAX_PAYLOAD_BYTES) {
            return bad(p, format!("frame payload of {len} bytes runs past the end"));
        }
        match FrameKind::from_u32(le_u32(h, 24)) {
            Some(FrameKind::End) => {
                out.data_end = end;
                out.last_t_ns = t_ns;
                return Ok(out);
            }
            Some(kind) => {
                if kind == FrameKind::Keyframe {
                    out.keyframes.push(KeyEntry {
                        offset: p,
                        seq,
                        t_ns,
                    });
                }
                out.frames += 1;
                out.last_t_ns = t_ns;
                p = end;
            }
            None => return bad(p, format!("unknown frame kind {}", le_u32(h, 24))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{append_end_frame, append_frame, encode_file_header, padding_bytes};
    use super::*;

    const ID: u64 = 0xfeed_0000_0000_0042;

    /// A sealed log with varied frame sizes (every 5th a keyframe), its keyframes and frame
    /// offsets.
    fn log(frames: u64) -> (Vec<u8>, Vec<KeyEntry>, Vec<u64>) {
        let mut b = vec![0u8; BLOCK_BYTES];
        encode_file_header(ID, 1, &mut b);
        let mut off = BLOCK_U64;
        let mut keys = Vec::new();
        let mut offs = Vec::new();
        let mut sum = 0;
        for seq in 0..frames {
            let len = 16 + ((seq * 7919) % 9000) as u32;
            let kind = if seq % 5 == 0 {
                FrameKind::Keyframe
            } else {
                FrameKind::Delta
            };
            let at = off + padding_bytes(off);
            if kind == FrameKind::Keyframe {
                keys.push(KeyEntry {
                    offset: at,
                    seq,
                    t_ns: seq * 1000,
                });
            }
            offs.push(at);
            off = append_frame(&mut b, off, ID, seq, seq * 1000, kind, len);
            sum += u64::from(len);
        }
        append_end_frame(&mut b, off, frames, frames * 1000, frames, sum);
        (b, keys, offs)
    }

    fn feed_in(
        s: &mut FrameStream,
        bytes: &[u8],
        chunk: usize,
    ) -> Result<StreamStatus, StreamError> {
        let mut st = StreamStatus::More;
        for c in bytes.chunks(chunk) {
            st = s.feed(c)?;
        }
        Ok(st)
    }

    #[test]
    fn good_stream_in_any_chunking() {
        let (b, keys, _) = log(300);
        for chunk in [1usize, 3, 31, 32, 33, 4096, 4097, 65536, b.len()] {
            let mut s = FrameStream::new(ID, BLOCK_U64, 0);
            let st = feed_in(&mut s, &b[BLOCK_BYTES..], chunk).unwrap();
            assert_eq!(st, StreamStatus::Ended, "chunk {chunk}");
            assert_eq!(s.frames(), 300);
            assert_eq!(s.pos(), b.len() as u64);
        }
        // From a keyframe's exact offset (a seek), with its seq.
        let k = keys[17];
        let mut s = FrameStream::new(ID, k.offset, k.seq);
        assert_eq!(
            feed_in(&mut s, &b[k.offset as usize..], 4000).unwrap(),
            StreamStatus::Ended
        );
        assert_eq!(s.frames(), 300 - k.seq);
        // Stopping at a frame end leaves it at a boundary; mid-frame does not.
        let mut s = FrameStream::new(ID, BLOCK_U64, 0);
        let end = keys[3].offset as usize;
        feed_in(&mut s, &b[BLOCK_BYTES..end], 100).unwrap();
        assert!(s.at_boundary());
        assert_eq!(s.last_frame().unwrap().seq, keys[3].seq - 1);
        s.feed(&b[end..end + 40]).unwrap();
        assert!(!s.at_boundary());
    }

    #[test]
    fn flipped_byte_is_an_error_at_its_frame() {
        let (b, _, offs) = log(60);
        for (victim, delta) in [(10usize, 40u64), (11, 5), (30, 20), (59, 0)] {
            let frame = offs[victim];
            let mut bad = b.clone();
            bad[(frame + delta) as usize] ^= 0x10;
            for chunk in [7usize, 4096] {
                let mut s = FrameStream::new(ID, BLOCK_U64, 0);
                let e = feed_in(&mut s, &bad[BLOCK_BYTES..], chunk).unwrap_err();
                assert_eq!(e.offset, frame, "frame {victim}+{delta}: {e}");
            }
        }
        // A non-zero byte in padding is named exactly: frame 0 ends 10 bytes before the block
        // boundary, so frame 1 starts at the next block.
        let mut p = vec![0u8; BLOCK_BYTES];
        encode_file_header(ID, 1, &mut p);
        let mut off = append_frame(&mut p, BLOCK_U64, ID, 0, 0, FrameKind::Keyframe, 4054);
        assert_eq!(off, 2 * BLOCK_U64 - 10);
        off = append_frame(&mut p, off, ID, 1, 0, FrameKind::Delta, 100);
        append_end_frame(&mut p, off, 2, 0, 2, 4154);
        let mut s = FrameStream::new(ID, BLOCK_U64, 0);
        assert_eq!(s.feed(&p[BLOCK_BYTES..]).unwrap(), StreamStatus::Ended);
        p[2 * BLOCK_BYTES - 3] = 1;
        for chunk in [1usize, 100, 4096] {
            let mut s = FrameStream::new(ID, BLOCK_U64, 0);
            let e = feed_in(&mut s, &p[BLOCK_BYTES..], chunk).unwrap_err();
            assert_eq!(e.offset, 2 * BLOCK_U64 - 3, "{e}");
        }
    }

    #[test]
    fn sequence_gap_and_wrong_match_are_errors() {
        let (b, keys, _) = log(40);
        // Starting at a keyframe with the wrong seq: the first frame is a gap.
        let k = keys[2];
        let mut s = FrameStream::new(ID, k.offset, k.seq + 1);
        let e = s.feed(&b[k.offset as usize..]).unwrap_err();
        assert_eq!(e.offset, k.offset);
        assert!(e.why.contains("seq"), "{e}");
        // A log with frame 5 missing (frames 0..5 then 6..): a gap at frame 6.
        let mut g = vec![0u8; BLOCK_BYTES];
        encode_file_header(ID, 1, &mut g);
        let mut off = BLOCK_U64;
        let mut gap_at = 0;
        for seq in (0..10u64).filter(|s| *s != 5) {
            if seq == 6 {
                gap_at = off + padding_bytes(off);
            }
            off = append_frame(&mut g, off, ID, seq, 0, FrameKind::Delta, 100);
        }
        let mut s = FrameStream::new(ID, BLOCK_U64, 0);
        let e = s.feed(&g[BLOCK_BYTES..]).unwrap_err();
        assert_eq!(e.offset, gap_at);
        assert!(e.why.contains("expected 5"), "{e}");
        // Another match's log.
        let mut s = FrameStream::new(ID + 1, BLOCK_U64, 0);
        let e = s.feed(&b[BLOCK_BYTES..]).unwrap_err();
        assert!(e.why.contains("match id"), "{e}");
        assert!(check_header_block(&b, ID + 1).is_err());
        assert!(check_header_block(&b, ID).is_ok());
    }

    #[test]
    fn index_rebuilds_keyframes_and_end() {
        let (b, keys, _) = log(123);
        let mut padded = b.clone();
        padded.resize(b.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES + 8192, 0);
        let idx = index_log(&padded, ID).unwrap();
        assert_eq!(idx.keyframes, keys);
        assert_eq!(idx.data_end, b.len() as u64);
        assert_eq!(idx.frames, 123);
        // An open log (no end frame) is refused; a bad header is named.
        let (open, _, offs) = log(10);
        let cut = &open[..offs[9] as usize];
        assert!(index_log(cut, ID).unwrap_err().why.contains("not sealed"));
        assert_eq!(index_log(&b, ID + 1).unwrap_err().offset, 8);
        // A flipped payload byte is not its business (the verifier's).
        let mut flipped = b.clone();
        flipped[offs[3] as usize + 40] ^= 1;
        assert!(index_log(&flipped, ID).is_ok());
    }

    #[test]
    fn no_panics_on_any_bytes() {
        let (b, _, _) = log(30);
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..300 {
            let mut bytes = b[BLOCK_BYTES..].to_vec();
            for _ in 0..(round % 7 + 1) {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            if round % 3 == 0 {
                bytes.iter_mut().for_each(|v| *v = next() as u8);
            }
            let mut s = FrameStream::new(ID, BLOCK_U64, 0);
            let mut at = 0;
            while at < bytes.len() {
                let n = ((next() % 5000) as usize + 1).min(bytes.len() - at);
                if s.feed(&bytes[at..at + n]).is_err() {
                    break;
                }
                at += n;
            }
            let _ = index_log(&bytes, ID);
        }
    }
}
