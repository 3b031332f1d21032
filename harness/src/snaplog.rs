//! SNAPLOG1: the match-log format every engine writes, and the one checker that verifies them all.
//!
//! The format is specified in docs/snaplog.md. In short (little-endian, block size
//! [`BLOCK_BYTES`], CRC-32C):
//!
//! * bytes `0..4096`: the file header (magic, match id, creation time, block size, crc, zeros);
//! * from byte 4096 on: frames, each a 32-byte header (magic, len, seq, `t_ns`, kind, crc) and a
//!   payload of `len` bytes. A frame header never crosses a block boundary: when fewer than 32
//!   bytes remain in the block the writer zero-fills to the boundary;
//! * a reader at offset `p` that has fewer than 32 bytes left in the block, or reads a zero `u32`
//!   at `p`, moves to the next multiple of [`BLOCK_BYTES`] strictly after `p`; the bytes it skips
//!   must all be zero;
//! * the end frame (kind 2) carries the number of data frames before it and the sum of their
//!   payload lengths; only zero bytes may follow it.
//!
//! # States and the torn-versus-damaged rule
//!
//! [`check_log`] reads frames in order until the first position where the rules stop holding (the
//! *bad spot*: a bad frame, a truncated one, or a non-zero byte where only padding may be). Then:
//!
//! * **sealed**: a valid end frame was reached, its counts agree, and only zeros follow it;
//! * **open**: no end frame and no bad spot: every byte after the last valid frame is zero;
//! * **damaged**: the file header is bad (or disagrees with the match id of the file name), the
//!   end frame's counts disagree, a non-zero byte follows the end frame, or an *intact frame*
//!   exists at or after the bad spot;
//! * **torn**: otherwise (no end frame, and the non-zero bytes after the last valid frame form no
//!   intact frame: what a crash in the middle of a write leaves). A file with no header whose
//!   bytes are all zero (none at all, or a preallocated range) is torn too: a crash after the
//!   log was created and before its header was written leaves exactly that, and nothing in it
//!   contradicts the format.
//!
//! An *intact frame* is a frame magic at any byte offset (not only at block starts) whose header
//! does not cross a block boundary, whose kind and length are legal, whose payload fits in the
//! file, and whose CRC matches. Sequence numbers and payload contents are deliberately **not**
//! required: a CRC-valid frame that is out of sequence (a gap, a duplicate, a frame of another
//! match) is positive evidence that data after the bad spot was written, so it can only be
//! damage, never a crash in the middle of the last write. In particular a hole of zeros followed
//! by valid frames (e.g. an out-of-order write that completed while an earlier one did not) is
//! damaged. The forward search looks at every byte offset from the bad spot to the end.

/// Block size of a SNAPLOG1 file, in bytes: the header occupies the first block, and no frame
/// header crosses a block boundary.
pub const BLOCK_BYTES: usize = 4096;
/// The first 8 bytes of every SNAPLOG1 file.
pub const FILE_MAGIC: &[u8; 8] = b"SNAPLOG1";
/// Magic number that starts every frame header (the bytes "SNAP" read as a little-endian `u32`).
pub const FRAME_MAGIC: u32 = 0x5041_4E53;
/// Size of a frame header, in bytes.
pub const FRAME_HEADER_BYTES: usize = 32;
/// Largest payload of a data frame (kinds 0 and 1), in bytes (16 MiB).
pub const MAX_PAYLOAD_BYTES: u32 = 16 << 20;
/// Smallest payload of a data frame (kinds 0 and 1), in bytes: it holds match id and seq.
pub const MIN_PAYLOAD_BYTES: u32 = 16;
/// Payload of the end frame (kind 2), in bytes: frames before it (u64) and their payload sum (u64).
pub const END_PAYLOAD_BYTES: u32 = 16;
/// Bytes at the start of the file header that carry data (magic .. crc); the rest of the first
/// block is zero.
pub const FILE_HEADER_USED_BYTES: usize = 32;

mod stream;
pub use stream::{
    check_header_block, index_log, FrameStream, KeyEntry, LogIndex, StreamError, StreamFrame,
    StreamStatus,
};

const BLOCK_U64: u64 = BLOCK_BYTES as u64;
const HEADER_U64: u64 = FRAME_HEADER_BYTES as u64;
const FRAME_MAGIC_BYTES: [u8; 4] = FRAME_MAGIC.to_le_bytes();

/// Kind of a frame, the `kind` field of its header.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A delta snapshot (kind 0).
    Delta = 0,
    /// A keyframe: a full snapshot (kind 1).
    Keyframe = 1,
    /// The end of the match (kind 2); its payload holds the counts of the frames before it.
    End = 2,
}

impl FrameKind {
    /// The kind with this on-disk value, or `None` if the value is not a known kind.
    pub fn from_u32(value: u32) -> Option<FrameKind> {
        match value {
            0 => Some(FrameKind::Delta),
            1 => Some(FrameKind::Keyframe),
            2 => Some(FrameKind::End),
            _ => None,
        }
    }
}

/// CRC-32C (Castagnoli, reflected, init and final XOR `0xFFFF_FFFF`) of `bytes`;
/// `crc32c(b"123456789") == 0xE306_9283`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    ::crc32c::crc32c(bytes)
}

/// File name of the log of match `match_id`: `m` + 16 lowercase hex digits + `.snap`.
pub fn log_file_name(match_id: u64) -> String {
    format!("m{match_id:016x}.snap")
}

/// The match id encoded in a log file name made by [`log_file_name`]; `None` for any other name
/// (exactly 16 lowercase hex digits are required).
pub fn parse_log_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix('m')?.strip_suffix(".snap")?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Writes the whole first block of a log (the file header, then zeros up to [`BLOCK_BYTES`]) into
/// `out[..BLOCK_BYTES]`; bytes of `out` after the first block are left as they are.
///
/// # Panics
/// If `out.len() < BLOCK_BYTES` (a caller bug, not an input condition).
pub fn encode_file_header(match_id: u64, created_unix_ns: u64, out: &mut [u8]) {
    assert!(
        out.len() >= BLOCK_BYTES,
        "encode_file_header: buffer of {} bytes, need {BLOCK_BYTES}",
        out.len()
    );
    let block = &mut out[..BLOCK_BYTES];
    block.fill(0);
    block[0..8].copy_from_slice(FILE_MAGIC);
    block[8..16].copy_from_slice(&match_id.to_le_bytes());
    block[16..24].copy_from_slice(&created_unix_ns.to_le_bytes());
    block[24..28].copy_from_slice(&(BLOCK_BYTES as u32).to_le_bytes());
    let crc = crc32c(&block[0..28]);
    block[28..32].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes and validates a file header (magic, crc, block size, zeros in bytes `32..4096`) at the
/// start of `bytes`; returns `(match_id, created_unix_ns)`, or `None` if it is not valid.
pub fn decode_file_header(bytes: &[u8]) -> Option<(u64, u64)> {
    check_file_header(bytes).ok()
}

/// Zero bytes the writer puts before a frame header at file offset `offset_bytes`: the rest of the
/// block if fewer than [`FRAME_HEADER_BYTES`] remain in it, else 0.
pub fn padding_bytes(offset_bytes: u64) -> u64 {
    let left_in_block = BLOCK_U64 - offset_bytes % BLOCK_U64;
    if left_in_block < HEADER_U64 {
        left_in_block
    } else {
        0
    }
}

/// The payload length [`append_frame`] actually writes for a requested `payload_bytes`: clamped
/// into `MIN_PAYLOAD_BYTES..=MAX_PAYLOAD_BYTES`.
pub fn clamp_payload_bytes(payload_bytes: u32) -> u32 {
    payload_bytes.clamp(MIN_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES)
}

/// Bytes a frame with this payload adds when appended at file offset `offset`, including any zero
/// padding needed so its header does not cross a block boundary. `payload_bytes` is clamped like
/// [`append_frame`] does (see [`clamp_payload_bytes`]).
pub fn frame_span_bytes(offset: u64, payload_bytes: u32) -> u64 {
    padding_bytes(offset) + HEADER_U64 + u64::from(clamp_payload_bytes(payload_bytes))
}

/// The filler byte of a data frame's payload after match id and seq: cheap, deterministic.
fn filler_byte(seq: u64) -> u8 {
    0xA5 ^ (seq as u8)
}

/// Appends padding, header and payload `(a, b, filler…)` of one frame; returns the offset after it.
#[allow(clippy::too_many_arguments)]
fn push_frame(
    out: &mut Vec<u8>,
    offset: u64,
    seq: u64,
    t_ns: u64,
    kind: FrameKind,
    payload_bytes: u32,
    first: u64,
    second: u64,
    filler: u8,
) -> u64 {
    let pad = padding_bytes(offset) as usize;
    let len = payload_bytes as usize;
    out.reserve(pad + FRAME_HEADER_BYTES + len);
    out.resize(out.len() + pad, 0);
    let start = out.len();
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[0..4].copy_from_slice(&FRAME_MAGIC_BYTES);
    header[4..8].copy_from_slice(&payload_bytes.to_le_bytes());
    header[8..16].copy_from_slice(&seq.to_le_bytes());
    header[16..24].copy_from_slice(&t_ns.to_le_bytes());
    header[24..28].copy_from_slice(&(kind as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&second.to_le_bytes());
    out.resize(start + FRAME_HEADER_BYTES + len, filler);
    let crc = ::crc32c::crc32c_append(crc32c(&header[0..28]), &out[start + FRAME_HEADER_BYTES..]);
    out[start + 28..start + 32].copy_from_slice(&crc.to_le_bytes());
    offset + (pad + FRAME_HEADER_BYTES + len) as u64
}

/// Appends one data frame to `out`, whose next byte lands at file offset `offset`: first zero
/// padding to the block boundary if fewer than 32 bytes remain in the block, then the header, then
/// the payload (match id u64, seq u64, then a filler byte derived from `seq`). Returns the file
/// offset after the frame (`offset + frame_span_bytes(offset, payload_bytes)`).
///
/// `payload_bytes` is clamped into `MIN_PAYLOAD_BYTES..=MAX_PAYLOAD_BYTES` (callers validate sizes
/// up front; the clamped length is the one the end frame must count). Allocates only when `out`
/// has to grow: reuse one buffer.
///
/// # Panics
/// If `kind` is [`FrameKind::End`]: write end frames with [`append_end_frame`].
pub fn append_frame(
    out: &mut Vec<u8>,
    offset: u64,
    match_id: u64,
    seq: u64,
    t_ns: u64,
    kind: FrameKind,
    payload_bytes: u32,
) -> u64 {
    assert!(
        kind != FrameKind::End,
        "append_frame: write the end frame with append_end_frame"
    );
    let len = clamp_payload_bytes(payload_bytes);
    push_frame(
        out,
        offset,
        seq,
        t_ns,
        kind,
        len,
        match_id,
        seq,
        filler_byte(seq),
    )
}

/// Appends the end frame (kind 2, payload = `frames_before` u64, `payload_bytes_sum` u64, where
/// `seq` = `frames_before` for a valid log) with the same padding rule as [`append_frame`];
/// returns the file offset after it.
pub fn append_end_frame(
    out: &mut Vec<u8>,
    offset: u64,
    seq: u64,
    t_ns: u64,
    frames_before: u64,
    payload_bytes_sum: u64,
) -> u64 {
    push_frame(
        out,
        offset,
        seq,
        t_ns,
        FrameKind::End,
        END_PAYLOAD_BYTES,
        frames_before,
        payload_bytes_sum,
        0,
    )
}

// ------------------------------------------------------------------------------------------------
// Reading and checking
// ------------------------------------------------------------------------------------------------

/// Verdict on a log, as docs/snaplog.md defines the states (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogState {
    /// A valid end frame with correct counts, only zero bytes after it.
    Sealed,
    /// No end frame; every byte after the last valid frame is zero.
    Open,
    /// No end frame; non-zero bytes after the last valid frame that form no intact frame (or a
    /// file of zeros only, with no header yet).
    Torn,
    /// Anything else: bad header, a bad spot followed by an intact frame, wrong end-frame counts,
    /// non-zero bytes after the end frame, a header that disagrees with the file name.
    Damaged,
}

/// One valid frame, as [`for_each_frame`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// File offset of the frame header, in bytes (after any padding before it).
    pub offset: u64,
    /// Sequence number of the frame within its match.
    pub seq: u64,
    /// Intended arrival time, ns since the run started.
    pub t_ns: u64,
    /// Kind of the frame.
    pub kind: FrameKind,
    /// Payload length, in bytes.
    pub payload_bytes: u32,
}

/// Result of checking a log.
#[derive(Clone, Debug)]
pub struct LogCheck {
    /// The verdict.
    pub state: LogState,
    /// Match id from the file header, if the header is valid.
    pub match_id: Option<u64>,
    /// Number of valid data frames (kinds 0 and 1) before the first invalid spot.
    pub frames: u64,
    /// Sum of the payload lengths of those frames, in bytes.
    pub payload_bytes: u64,
    /// Seq of the last valid data frame (the end frame is not counted), if any.
    pub last_seq: Option<u64>,
    /// File offset just after the last valid frame (the end frame included when valid), in bytes;
    /// [`BLOCK_BYTES`] if there is none (also when the header is invalid).
    pub valid_end_offset: u64,
    /// For torn and damaged logs: the file offset of the problem (the frame where reading stopped,
    /// or the first non-zero byte where only zeros may be) and a one-line description.
    pub problem: Option<(u64, String)>,
}

/// Checks a whole log held in memory (untrusted bytes) against every rule of SNAPLOG1 and returns
/// its state (see the module documentation for the torn-versus-damaged rule). If given,
/// `expected_match_id` (from the file name) must equal the header's match id, else the log is
/// damaged. Never panics, whatever the bytes.
pub fn check_log(bytes: &[u8], expected_match_id: Option<u64>) -> LogCheck {
    scan(bytes, u64::MAX, expected_match_id, |_| {})
}

/// Calls `f` for each valid frame in file order (the end frame included, when valid), stopping at
/// the first invalid spot, and returns the same verdict as [`check_log`] for the first
/// `limit` bytes of `bytes` (readers of a live log pass the writer's published written offset;
/// pass `u64::MAX` to read everything). Never panics, whatever the bytes.
pub fn for_each_frame(bytes: &[u8], limit: u64, f: impl FnMut(&FrameInfo)) -> LogCheck {
    scan(bytes, limit, None, f)
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at.saturating_add(4)) {
        word.copy_from_slice(src);
    }
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..at.saturating_add(8)) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

/// Index of the first non-zero byte of `bytes`.
fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    const CHUNK: usize = 64;
    let mut chunks = bytes.chunks_exact(CHUNK);
    let mut base = 0;
    for chunk in &mut chunks {
        if chunk.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return chunk.iter().position(|&b| b != 0).map(|i| base + i);
        }
        base += CHUNK;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b != 0)
        .map(|i| base + i)
}

/// Validates the file header; on failure, the offset and description of the problem.
fn check_file_header(bytes: &[u8]) -> Result<(u64, u64), (u64, String)> {
    let Some(block) = bytes.get(..BLOCK_BYTES) else {
        return Err((
            0,
            format!(
                "file is {} bytes, shorter than its {BLOCK_BYTES}-byte header block",
                bytes.len()
            ),
        ));
    };
    if &block[0..8] != FILE_MAGIC {
        return Err((0, "bad file magic (not a SNAPLOG1 file)".to_string()));
    }
    let stored_crc = le_u32(block, 28);
    let crc = crc32c(&block[0..28]);
    if stored_crc != crc {
        return Err((
            0,
            format!("file header crc {stored_crc:#010x}, computed {crc:#010x}"),
        ));
    }
    let block_size = le_u32(block, 24);
    if block_size as usize != BLOCK_BYTES {
        return Err((
            0,
            format!("file header block size {block_size}, expected {BLOCK_BYTES}"),
        ));
    }
    if let Some(i) = first_nonzero(&block[FILE_HEADER_USED_BYTES..]) {
        let at = FILE_HEADER_USED_BYTES + i;
        return Err((
            at as u64,
            format!("non-zero byte at {at} in the file header's zero area"),
        ));
    }
    Ok((le_u64(block, 8), le_u64(block, 16)))
}

/// Header fields of a frame that passed the structural checks.
struct RawFrame {
    len: u32,
    seq: u64,
    t_ns: u64,
    kind: FrameKind,
}

/// Structural checks of the frame whose header starts at `p` (header inside its block, magic,
/// kind, length bounds, payload inside `view`) and its CRC. No sequence or payload checks.
fn parse_frame(view: &[u8], p: usize) -> Result<RawFrame, String> {
    if BLOCK_BYTES - p % BLOCK_BYTES < FRAME_HEADER_BYTES {
        return Err("frame header crosses a block boundary".to_string());
    }
    let Some(header) = view.get(p..p.saturating_add(FRAME_HEADER_BYTES)) else {
        return Err(format!(
            "truncated frame header: {} of {FRAME_HEADER_BYTES} bytes before the end",
            view.len().saturating_sub(p)
        ));
    };
    let magic = le_u32(header, 0);
    if magic != FRAME_MAGIC {
        return Err(format!("bad frame magic {magic:#010x}"));
    }
    let len = le_u32(header, 4);
    let kind_raw = le_u32(header, 24);
    let Some(kind) = FrameKind::from_u32(kind_raw) else {
        return Err(format!("unknown frame kind {kind_raw}"));
    };
    match kind {
        FrameKind::End if len != END_PAYLOAD_BYTES => {
            return Err(format!(
                "end frame payload of {len} bytes, must be {END_PAYLOAD_BYTES}"
            ));
        }
        FrameKind::Delta | FrameKind::Keyframe
            if !(MIN_PAYLOAD_BYTES..=MAX_PAYLOAD_BYTES).contains(&len) =>
        {
            return Err(format!(
                "frame payload of {len} bytes, outside {MIN_PAYLOAD_BYTES}..={MAX_PAYLOAD_BYTES}"
            ));
        }
        _ => {}
    }
    let payload_start = p + FRAME_HEADER_BYTES;
    let Some(payload) = view.get(payload_start..payload_start.saturating_add(len as usize)) else {
        return Err(format!(
            "frame payload of {len} bytes runs past the end ({} bytes there)",
            view.len().saturating_sub(payload_start)
        ));
    };
    let stored_crc = le_u32(header, 28);
    let crc = ::crc32c::crc32c_append(crc32c(&header[0..28]), payload);
    if stored_crc != crc {
        return Err(format!(
            "frame crc {stored_crc:#010x}, computed {crc:#010x}"
        ));
    }
    Ok(RawFrame {
        len,
        seq: le_u64(header, 8),
        t_ns: le_u64(header, 16),
        kind,
    })
}

/// First offset `>= from` holding an intact frame (see the module documentation).
fn find_intact_frame(view: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let rest = view.get(at..)?;
        let i = at + rest.windows(4).position(|w| w == FRAME_MAGIC_BYTES)?;
        if parse_frame(view, i).is_ok() {
            return Some(i);
        }
        at = i + 1;
    }
}

/// How the sequential read ended.
enum Stop {
    /// Reached the end with no bad spot and no end frame.
    CleanEnd,
    /// A valid end frame with correct counts and only zeros after it.
    Sealed,
    /// Damaged without further search (end-frame counts, bytes after the end frame).
    Damaged(usize, String),
    /// The first bad spot: torn or damaged depending on what follows.
    Bad(usize, String),
}

fn scan(
    bytes: &[u8],
    limit: u64,
    expected_match_id: Option<u64>,
    mut f: impl FnMut(&FrameInfo),
) -> LogCheck {
    let n = usize::try_from(limit).map_or(bytes.len(), |l| l.min(bytes.len()));
    let view = &bytes[..n];
    let mut check = LogCheck {
        state: LogState::Damaged,
        match_id: None,
        frames: 0,
        payload_bytes: 0,
        last_seq: None,
        valid_end_offset: BLOCK_U64,
        problem: None,
    };
    let match_id = match check_file_header(view) {
        Ok((match_id, _created_unix_ns)) => match_id,
        Err(problem) => {
            if first_nonzero(view).is_none() {
                // Created (and maybe preallocated), then a crash before the header landed.
                check.state = LogState::Torn;
                check.problem = Some((
                    0,
                    format!(
                        "no file header: all {n} bytes are zero (a crash after create, before \
                         the header was written)"
                    ),
                ));
            } else {
                check.problem = Some(problem);
            }
            return check;
        }
    };
    check.match_id = Some(match_id);

    let mut p = BLOCK_BYTES;
    let mut next_seq = 0u64;
    let stop = loop {
        if p >= n {
            break Stop::CleanEnd;
        }
        let block_end = (p / BLOCK_BYTES + 1) * BLOCK_BYTES;
        let word_end = (p + 4).min(n);
        if block_end - p < FRAME_HEADER_BYTES || first_nonzero(&view[p..word_end]).is_none() {
            // Padding up to the next block boundary: must be all zero.
            if let Some(i) = first_nonzero(&view[p..block_end.min(n)]) {
                break Stop::Bad(
                    p + i,
                    format!("non-zero byte in padding that starts at {p}"),
                );
            }
            p = block_end;
            continue;
        }
        let frame = match parse_frame(view, p) {
            Ok(frame) => frame,
            Err(why) => break Stop::Bad(p, why),
        };
        if frame.seq != next_seq {
            break Stop::Bad(p, format!("frame seq {}, expected {next_seq}", frame.seq));
        }
        let payload_start = p + FRAME_HEADER_BYTES;
        let first = le_u64(view, payload_start);
        let second = le_u64(view, payload_start + 8);
        let info = FrameInfo {
            offset: p as u64,
            seq: frame.seq,
            t_ns: frame.t_ns,
            kind: frame.kind,
            payload_bytes: frame.len,
        };
        let end = payload_start + frame.len as usize;
        match frame.kind {
            FrameKind::Delta | FrameKind::Keyframe => {
                if first != match_id {
                    break Stop::Bad(
                        p,
                        format!("frame payload match id {first:#x}, header {match_id:#x}"),
                    );
                }
                if second != frame.seq {
                    break Stop::Bad(
                        p,
                        format!("frame payload seq {second}, header {}", frame.seq),
                    );
                }
                f(&info);
                check.frames += 1;
                check.payload_bytes = check.payload_bytes.saturating_add(u64::from(frame.len));
                check.last_seq = Some(frame.seq);
                check.valid_end_offset = end as u64;
                next_seq = next_seq.saturating_add(1);
                p = end;
            }
            FrameKind::End => {
                if first != check.frames || second != check.payload_bytes {
                    break Stop::Damaged(
                        p,
                        format!(
                            "end frame counts {first} frames / {second} bytes, log has {} / {}",
                            check.frames, check.payload_bytes
                        ),
                    );
                }
                f(&info);
                check.valid_end_offset = end as u64;
                break match first_nonzero(&view[end..]) {
                    Some(i) => Stop::Damaged(
                        end + i,
                        format!("non-zero byte at {} after the end frame", end + i),
                    ),
                    None => Stop::Sealed,
                };
            }
        }
    };

    let (state, problem) = match stop {
        Stop::CleanEnd => (LogState::Open, None),
        Stop::Sealed => (LogState::Sealed, None),
        Stop::Damaged(at, why) => (LogState::Damaged, Some((at as u64, why))),
        Stop::Bad(at, why) => match find_intact_frame(view, at) {
            Some(i) if i == at => (LogState::Damaged, Some((at as u64, why))),
            Some(i) => (
                LogState::Damaged,
                Some((at as u64, format!("{why}; an intact frame follows at {i}"))),
            ),
            None => (LogState::Torn, Some((at as u64, why))),
        },
    };
    check.state = state;
    check.problem = problem;
    if let Some(expected) = expected_match_id {
        if expected != match_id {
            check.state = LogState::Damaged;
            check.problem = Some((
                8,
                format!("file header match id {match_id:016x}, file name says {expected:016x}"),
            ));
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATCH: u64 = 0x0123_4567_89ab_cdef;

    /// splitmix64: a seeded generator for the tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
            lo + self.next() % (hi_inclusive - lo + 1)
        }
    }

    /// A log under construction, with what the checker should find in it.
    struct Log {
        bytes: Vec<u8>,
        frames: Vec<FrameInfo>,
        payload_sum: u64,
    }

    impl Log {
        fn new() -> Log {
            let mut bytes = vec![0u8; BLOCK_BYTES];
            encode_file_header(MATCH, 42, &mut bytes);
            Log {
                bytes,
                frames: Vec::new(),
                payload_sum: 0,
            }
        }
        fn offset(&self) -> u64 {
            self.bytes.len() as u64
        }
        fn push(&mut self, payload_bytes: u32) {
            let offset = self.offset();
            let seq = self.frames.len() as u64;
            let kind = if seq % 5 == 0 {
                FrameKind::Keyframe
            } else {
                FrameKind::Delta
            };
            let span = frame_span_bytes(offset, payload_bytes);
            let end = append_frame(
                &mut self.bytes,
                offset,
                MATCH,
                seq,
                seq * 7_812_500,
                kind,
                payload_bytes,
            );
            assert_eq!(end, offset + span);
            assert_eq!(end, self.offset());
            self.frames.push(FrameInfo {
                offset: offset + padding_bytes(offset),
                seq,
                t_ns: seq * 7_812_500,
                kind,
                payload_bytes,
            });
            self.payload_sum += u64::from(payload_bytes);
        }
        /// Pushes a frame that ends `k` bytes before a block boundary.
        fn push_ending_before_boundary(&mut self, k: u64) {
            let header_at = self.offset() + padding_bytes(self.offset());
            let target = BLOCK_U64 - k; // wanted (end % B)
            let mut len = (target + BLOCK_U64 - (header_at + HEADER_U64) % BLOCK_U64) % BLOCK_U64;
            if len < u64::from(MIN_PAYLOAD_BYTES) {
                len += BLOCK_U64;
            }
            self.push(len as u32);
            assert_eq!(self.offset() % BLOCK_U64, BLOCK_U64 - k);
        }
        fn seal(&mut self) -> FrameInfo {
            let offset = self.offset();
            let seq = self.frames.len() as u64;
            append_end_frame(&mut self.bytes, offset, seq, 1, seq, self.payload_sum);
            FrameInfo {
                offset: offset + padding_bytes(offset),
                seq,
                t_ns: 1,
                kind: FrameKind::End,
                payload_bytes: 16,
            }
        }
    }

    fn collect(bytes: &[u8], limit: u64) -> (Vec<FrameInfo>, LogCheck) {
        let mut seen = Vec::new();
        let check = for_each_frame(bytes, limit, |f| seen.push(*f));
        (seen, check)
    }

    /// A log whose frames exercise every padding case, and payloads crossing blocks.
    fn varied_log(rng: &mut Rng, frames: usize, max_payload: u64) -> Log {
        let mut log = Log::new();
        log.push(16);
        for k in 1..=31 {
            log.push_ending_before_boundary(k);
            log.push(rng.range(16, max_payload) as u32);
        }
        log.push_ending_before_boundary(32); // exactly a header's worth left: no padding
        log.push(16);
        log.push_ending_before_boundary(BLOCK_U64); // ends on a boundary
        log.push(BLOCK_U64 as u32 * 2 + 5); // crosses blocks
        while log.frames.len() < frames {
            log.push(rng.range(16, max_payload) as u32);
        }
        log
    }

    #[test]
    fn crc_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        let data = b"hello, snaplog";
        assert_eq!(
            ::crc32c::crc32c_append(crc32c(&data[..5]), &data[5..]),
            crc32c(data)
        );
    }

    #[test]
    fn file_header_round_trip() {
        let mut block = vec![0xEEu8; BLOCK_BYTES + 10];
        encode_file_header(0xdead_beef_0000_0001, 1_700_000_000_123_456_789, &mut block);
        assert_eq!(&block[..8], b"SNAPLOG1");
        assert!(block[32..BLOCK_BYTES].iter().all(|&b| b == 0));
        assert_eq!(&block[BLOCK_BYTES..], &[0xEE; 10]);
        assert_eq!(le_u32(&block, 24), 4096);
        assert_eq!(le_u32(&block, 28), crc32c(&block[..28]));
        assert_eq!(
            decode_file_header(&block),
            Some((0xdead_beef_0000_0001, 1_700_000_000_123_456_789))
        );
        assert_eq!(decode_file_header(&block[..BLOCK_BYTES - 1]), None);
        for i in 0..64 {
            let mut bad = block.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode_file_header(&bad), None, "flip at {i}");
        }
        block[BLOCK_BYTES - 1] = 1;
        assert_eq!(decode_file_header(&block), None);
    }

    #[test]
    fn file_name_round_trip() {
        for id in [0, 1, 0xabc, MATCH, u64::MAX] {
            let name = log_file_name(id);
            assert_eq!(name.len(), 1 + 16 + 5);
            assert_eq!(parse_log_file_name(&name), Some(id));
        }
        assert_eq!(log_file_name(0xabc), "m0000000000000abc.snap");
        for bad in [
            "",
            "m.snap",
            "m0000000000000ABC.snap",
            "m000000000000abc.snap",
            "m00000000000000abc.snap",
            "x0000000000000abc.snap",
            "m0000000000000abc.snp",
            "m+000000000000abc.snap",
            "m0000000000000abg.snap",
            "m0000000000000abc.snap.tmp",
            "mé000000000000ab.snap",
        ] {
            assert_eq!(parse_log_file_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn frame_span_matches_append() {
        let mut out = Vec::new();
        let mut rng = Rng(7);
        let sizes = [
            0u32,
            1,
            15,
            16,
            17,
            31,
            32,
            33,
            4064,
            4096,
            4097,
            10_000,
            MAX_PAYLOAD_BYTES + 1,
        ];
        for offset in BLOCK_U64..2 * BLOCK_U64 + 40 {
            for &size in sizes.iter().take(11) {
                out.clear();
                let end = append_frame(&mut out, offset, 1, 2, 3, FrameKind::Delta, size);
                assert_eq!(
                    out.len() as u64,
                    frame_span_bytes(offset, size),
                    "{offset} {size}"
                );
                assert_eq!(end, offset + out.len() as u64);
                // the header never crosses a block and padding is zeros
                let pad = padding_bytes(offset) as usize;
                assert!(out[..pad].iter().all(|&b| b == 0));
                let header_at = offset + pad as u64;
                assert!(BLOCK_U64 - header_at % BLOCK_U64 >= HEADER_U64);
                assert_eq!(le_u32(&out, pad), FRAME_MAGIC);
            }
            out.clear();
            let end = append_end_frame(&mut out, offset, 9, 9, 9, 9);
            assert_eq!(end - offset, frame_span_bytes(offset, 16));
        }
        out.clear();
        let end = append_frame(&mut out, 8192, 1, 2, 3, FrameKind::Keyframe, sizes[12]);
        assert_eq!(end - 8192, 32 + u64::from(MAX_PAYLOAD_BYTES));
        assert_eq!(frame_span_bytes(8192, sizes[12]), end - 8192);
        for _ in 0..3_000 {
            let offset = rng.range(BLOCK_U64, 1 << 40);
            let size = rng.range(0, 70_000) as u32;
            out.clear();
            let end = append_frame(&mut out, offset, 5, 6, 7, FrameKind::Delta, size);
            assert_eq!(end - offset, frame_span_bytes(offset, size));
            assert_eq!(out.len() as u64, end - offset);
        }
    }

    #[test]
    fn round_trip_sealed_and_open() {
        let mut rng = Rng(0x5eed);
        let mut log = varied_log(&mut rng, 400, 60_000);
        // large ones, up to the maximum
        log.push(MAX_PAYLOAD_BYTES);
        log.push(16);
        log.push(MAX_PAYLOAD_BYTES - 1);
        log.push(12 << 20);
        log.push(100);

        // Open: just the frames, then with preallocated zeros, then through a limit.
        let (seen, open) = collect(&log.bytes, u64::MAX);
        assert_eq!(open.state, LogState::Open, "{:?}", open.problem);
        assert_eq!(seen, log.frames);
        assert_eq!(open.frames, log.frames.len() as u64);
        assert_eq!(open.payload_bytes, log.payload_sum);
        assert_eq!(open.last_seq, Some(log.frames.len() as u64 - 1));
        assert_eq!(open.valid_end_offset, log.offset());
        assert_eq!(open.match_id, Some(MATCH));
        assert!(open.problem.is_none());

        let mut prealloc = log.bytes.clone();
        prealloc.resize(prealloc.len().next_multiple_of(8 << 20) + (8 << 20), 0);
        let open = check_log(&prealloc, Some(MATCH));
        assert_eq!(open.state, LogState::Open, "{:?}", open.problem);
        assert_eq!(open.frames, log.frames.len() as u64);
        assert_eq!(open.valid_end_offset, log.offset());

        // Sealed, with and without trailing zeros.
        let end = log.seal();
        let mut sealed_frames = log.frames.clone();
        sealed_frames.push(end);
        let (seen, sealed) = collect(&log.bytes, u64::MAX);
        assert_eq!(sealed.state, LogState::Sealed, "{:?}", sealed.problem);
        assert_eq!(seen, sealed_frames);
        assert_eq!(sealed.frames, log.frames.len() as u64);
        assert_eq!(sealed.payload_bytes, log.payload_sum);
        assert_eq!(sealed.last_seq, Some(log.frames.len() as u64 - 1));
        assert_eq!(sealed.valid_end_offset, log.offset());
        assert!(sealed.problem.is_none());
        let mut padded = log.bytes.clone();
        padded.resize(padded.len() + 3 * BLOCK_BYTES + 17, 0);
        let sealed = check_log(&padded, Some(MATCH));
        assert_eq!(sealed.state, LogState::Sealed);
        assert_eq!(sealed.valid_end_offset, log.offset());

        // Header only, and header + zeros, are open and empty.
        for len in [
            BLOCK_BYTES,
            BLOCK_BYTES + 1,
            BLOCK_BYTES + 31,
            5 * BLOCK_BYTES,
        ] {
            let empty = check_log(
                &prealloc[..BLOCK_BYTES]
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(0))
                    .take(len)
                    .collect::<Vec<_>>(),
                None,
            );
            assert_eq!(empty.state, LogState::Open);
            assert_eq!(
                (empty.frames, empty.last_seq, empty.valid_end_offset),
                (0, None, BLOCK_U64)
            );
        }
    }

    #[test]
    fn every_padding_case_seals() {
        // Seal right after frames ending k bytes before a boundary, for each k.
        for k in 0..=40u64 {
            let mut log = Log::new();
            log.push(100);
            log.push_ending_before_boundary(if k == 0 { BLOCK_U64 } else { k });
            let end = log.seal();
            if (1..32).contains(&k) {
                assert_eq!(end.offset % BLOCK_U64, 0);
            }
            let check = check_log(&log.bytes, Some(MATCH));
            assert_eq!(check.state, LogState::Sealed, "k={k}: {:?}", check.problem);
            assert_eq!(check.frames, 2);
        }
    }

    #[test]
    fn limit_reads_only_the_published_prefix() {
        let mut rng = Rng(3);
        let log = varied_log(&mut rng, 80, 9_000);
        let mut sealed = Log {
            bytes: log.bytes.clone(),
            frames: log.frames.clone(),
            payload_sum: log.payload_sum,
        };
        sealed.seal();
        for (i, frame) in log.frames.iter().enumerate() {
            let end = frame.offset + HEADER_U64 + u64::from(frame.payload_bytes);
            let (seen, check) = collect(&sealed.bytes, end);
            assert_eq!(check.state, LogState::Open);
            assert_eq!(seen.len(), i + 1);
            assert_eq!(check.valid_end_offset, end);
            // cut inside the frame: torn
            let check = for_each_frame(&sealed.bytes, end - 1, |_| {});
            assert_eq!(check.state, LogState::Torn);
            assert_eq!(check.problem.as_ref().map(|p| p.0), Some(frame.offset));
            assert_eq!(check.frames, i as u64);
        }
        assert_eq!(
            for_each_frame(&sealed.bytes, u64::MAX, |_| {}).state,
            LogState::Sealed
        );
        assert_eq!(
            for_each_frame(&sealed.bytes, 100, |_| {}).state,
            LogState::Damaged
        );
    }

    /// Flip every header byte and some payload bytes of every frame; check state and offset.
    fn flip_all(bytes: &[u8], frames: &[FrameInfo]) {
        let mut work = bytes.to_vec();
        for (i, frame) in frames.iter().enumerate() {
            let last = i + 1 == frames.len();
            let start = frame.offset as usize;
            let len = frame.payload_bytes as usize;
            let mut positions: Vec<usize> = (0..32).collect();
            positions.extend([32, 39, 40, 47, 48, 32 + len / 2, 32 + len - 1]);
            positions.retain(|&x| x < 32 + len);
            for x in positions {
                let masks: &[u8] = if x < 32 { &[0xFF, 0x01, 0x80] } else { &[0xFF] };
                for &mask in masks {
                    work[start + x] ^= mask;
                    let check = check_log(&work, Some(MATCH));
                    work[start + x] ^= mask;
                    let want = if last {
                        LogState::Torn
                    } else {
                        LogState::Damaged
                    };
                    assert_eq!(
                        check.state, want,
                        "frame {i} byte {x} mask {mask:#x}: {:?}",
                        check.problem
                    );
                    assert_eq!(
                        check.problem.as_ref().map(|p| p.0),
                        Some(frame.offset),
                        "frame {i} byte {x}"
                    );
                    assert_eq!(check.frames, i as u64);
                    assert_eq!(check.match_id, Some(MATCH));
                }
            }
        }
        assert_eq!(work, bytes);
    }

    #[test]
    fn flipped_bytes_in_frames() {
        let mut rng = Rng(11);
        let mut log = varied_log(&mut rng, 70, 3_000);
        flip_all(&log.bytes, &log.frames);
        let end = log.seal();
        let mut all = log.frames.clone();
        all.push(end);
        flip_all(&log.bytes, &all);
    }

    #[test]
    fn flipped_bytes_in_padding_and_after_end() {
        let mut rng = Rng(12);
        let mut log = varied_log(&mut rng, 40, 3_000);
        let open_len = log.bytes.len();
        log.seal();
        let end_at = log.bytes.len();
        log.bytes.resize(end_at + 2 * BLOCK_BYTES, 0);
        assert_eq!(check_log(&log.bytes, None).state, LogState::Sealed);
        // Every padding byte between frames.
        let mut padding = Vec::new();
        let mut prev_end = BLOCK_BYTES;
        for frame in &log.frames {
            padding.extend(prev_end..frame.offset as usize);
            prev_end = frame.offset as usize + 32 + frame.payload_bytes as usize;
        }
        assert!(padding.len() >= 31 * 16);
        for &x in &padding {
            log.bytes[x] = 0x5A;
            let check = check_log(&log.bytes, None);
            log.bytes[x] = 0;
            assert_eq!(check.state, LogState::Damaged, "padding byte {x}");
            assert_eq!(check.problem.map(|p| p.0), Some(x as u64));
        }
        // Every byte after the end frame (sampled) and at EOF.
        for x in (end_at..log.bytes.len())
            .step_by(97)
            .chain([log.bytes.len() - 1])
        {
            log.bytes[x] = 1;
            let check = check_log(&log.bytes, None);
            log.bytes[x] = 0;
            assert_eq!(check.state, LogState::Damaged, "byte {x} after the end");
            assert_eq!(check.problem.map(|p| p.0), Some(x as u64));
            assert_eq!(check.frames, log.frames.len() as u64);
        }
        // A flipped header byte: damaged, no match id.
        for x in [0, 8, 20, 25, 30, 32, 4095] {
            log.bytes[x] ^= 0x40;
            let check = check_log(&log.bytes, None);
            log.bytes[x] ^= 0x40;
            assert_eq!(check.state, LogState::Damaged, "header byte {x}");
            assert_eq!(check.match_id, None);
            assert_eq!(check.frames, 0);
        }
        assert_eq!(
            check_log(&log.bytes[..open_len], None).state,
            LogState::Open
        );
    }

    #[test]
    fn garbage_after_last_frame_is_torn() {
        let mut rng = Rng(13);
        let log = varied_log(&mut rng, 50, 5_000);
        let valid_end = log.offset();
        for (gap, garbage_len) in [
            (0usize, 1usize),
            (0, 3),
            (0, 31),
            (0, 500),
            (5, 40),
            (7000, 9000),
            (0, 20_000),
        ] {
            let mut bytes = log.bytes.clone();
            bytes.resize(bytes.len() + gap, 0);
            let at = bytes.len();
            bytes.extend((0..garbage_len).map(|_| (rng.next() as u8) | 1));
            bytes.resize(bytes.len() + 3 * BLOCK_BYTES, 0);
            let check = check_log(&bytes, Some(MATCH));
            assert_eq!(
                check.state,
                LogState::Torn,
                "gap {gap} len {garbage_len}: {:?}",
                check.problem
            );
            assert_eq!(check.frames, log.frames.len() as u64);
            assert_eq!(check.valid_end_offset, valid_end);
            assert_eq!(check.problem.map(|p| p.0), Some(at as u64));
        }
        // A half-written last frame, with and without preallocated zeros after it.
        let mut bytes = log.bytes.clone();
        let before = bytes.len() as u64;
        append_frame(
            &mut bytes,
            before,
            MATCH,
            log.frames.len() as u64,
            0,
            FrameKind::Delta,
            6000,
        );
        let header_at = before + padding_bytes(before);
        for cut in [
            header_at + 1,
            header_at + 20,
            header_at + 32,
            header_at + 4000,
            bytes.len() as u64 - 1,
        ] {
            let mut torn = bytes[..cut as usize].to_vec();
            assert_eq!(check_log(&torn, None).state, LogState::Torn, "cut {cut}");
            torn.resize(bytes.len() + 8192, 0);
            let check = check_log(&torn, None);
            assert_eq!(check.state, LogState::Torn, "cut {cut} + zeros");
            assert_eq!(check.problem.map(|p| p.0), Some(header_at));
        }
        // Garbage then an intact frame later: damaged.
        let mut bytes = log.bytes.clone();
        bytes.extend([1, 2, 3, 4, 5]);
        let at = bytes.len() as u64;
        append_frame(
            &mut bytes,
            at,
            MATCH,
            log.frames.len() as u64,
            0,
            FrameKind::Delta,
            64,
        );
        assert_eq!(check_log(&bytes, None).state, LogState::Damaged);
    }

    #[test]
    fn wrong_match_id_seq_and_counts_are_damaged() {
        let mut rng = Rng(14);
        let mut log = varied_log(&mut rng, 40, 2_000);
        log.seal();
        assert_eq!(check_log(&log.bytes, Some(MATCH)).state, LogState::Sealed);
        let check = check_log(&log.bytes, Some(MATCH + 1));
        assert_eq!(check.state, LogState::Damaged);
        assert_eq!(check.match_id, Some(MATCH));
        assert_eq!(check.problem.map(|p| p.0), Some(8));

        // End frame counts wrong.
        let base = varied_log(&mut Rng(15), 20, 2_000);
        let n = base.frames.len() as u64;
        for (seq, frames_before, sum) in [
            (n, n + 1, base.payload_sum),
            (n, n - 1, base.payload_sum),
            (n, n, base.payload_sum + 1),
            (n, n, 0),
        ] {
            let mut bytes = base.bytes.clone();
            let at = bytes.len() as u64;
            append_end_frame(&mut bytes, at, seq, 0, frames_before, sum);
            let check = check_log(&bytes, None);
            assert_eq!(check.state, LogState::Damaged, "{frames_before} {sum}");
            assert_eq!(check.problem.map(|p| p.0), Some(at + padding_bytes(at)));
            assert_eq!(check.frames, n);
        }
        // End frame with the wrong seq is intact but out of sequence: damaged.
        let mut bytes = base.bytes.clone();
        let at = bytes.len() as u64;
        append_end_frame(&mut bytes, at, n + 1, 0, n, base.payload_sum);
        assert_eq!(check_log(&bytes, None).state, LogState::Damaged);

        // A gap, a repeat, a first seq that is not 0, a frame of another match.
        let mut gap = base.bytes.clone();
        let at = gap.len() as u64;
        append_frame(&mut gap, at, MATCH, n + 1, 0, FrameKind::Delta, 100);
        assert_eq!(check_log(&gap, None).state, LogState::Damaged);
        let mut repeat = base.bytes.clone();
        append_frame(&mut repeat, at, MATCH, n - 1, 0, FrameKind::Delta, 100);
        assert_eq!(check_log(&repeat, None).state, LogState::Damaged);
        let mut other = base.bytes.clone();
        append_frame(&mut other, at, MATCH ^ 1, n, 0, FrameKind::Delta, 100);
        let check = check_log(&other, None);
        assert_eq!(check.state, LogState::Damaged);
        assert_eq!(check.frames, n);
        let mut first = Log::new();
        let at = first.offset();
        append_frame(&mut first.bytes, at, MATCH, 1, 0, FrameKind::Delta, 100);
        assert_eq!(check_log(&first.bytes, None).state, LogState::Damaged);

        // A frame after the end frame.
        let mut after = log.bytes.clone();
        let at = after.len() as u64;
        append_frame(&mut after, at, MATCH, n + 1, 0, FrameKind::Delta, 100);
        assert_eq!(check_log(&after, None).state, LogState::Damaged);
    }

    /// A frame written by hand, so that the checker's bounds can be tested.
    fn raw_frame(seq: u64, kind: u32, len: u32, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&seq.to_le_bytes());
        frame.extend_from_slice(&0u64.to_le_bytes());
        frame.extend_from_slice(&kind.to_le_bytes());
        let crc = ::crc32c::crc32c_append(crc32c(&frame), payload);
        frame.extend_from_slice(&crc.to_le_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn illegal_frames_are_rejected() {
        let base = Log::new();
        let data_payload = |len: usize| {
            let mut p = vec![7u8; len];
            if len >= 16 {
                p[..8].copy_from_slice(&MATCH.to_le_bytes());
                p[8..16].copy_from_slice(&0u64.to_le_bytes());
            }
            p
        };
        // The hand-made frame is right when legal ...
        let mut ok = base.bytes.clone();
        ok.extend(raw_frame(0, 0, 16, &data_payload(16)));
        assert_eq!(check_log(&ok, None).state, LogState::Open);
        // ... and rejected (torn, as nothing follows it) for each illegal field.
        for (kind, len) in [
            (0u32, 15u32),
            (1, 0),
            (0, MAX_PAYLOAD_BYTES + 1),
            (3, 16),
            (u32::MAX, 16),
            (2, 17),
            (2, 15),
        ] {
            let mut bad = base.bytes.clone();
            bad.extend(raw_frame(0, kind, len, &data_payload(len as usize)));
            let check = check_log(&bad, None);
            assert_eq!(check.state, LogState::Torn, "kind {kind} len {len}");
            assert_eq!(check.problem.map(|p| p.0), Some(BLOCK_U64));
        }
        // A header that crosses a block boundary (no padding written).
        let mut log = Log::new();
        log.push_ending_before_boundary(20);
        let mut crossing = log.bytes.clone();
        let mut payload = data_payload(100);
        payload[8..16].copy_from_slice(&1u64.to_le_bytes());
        crossing.extend(raw_frame(1, 0, 100, &payload));
        let check = check_log(&crossing, None);
        assert_eq!(check.state, LogState::Torn, "{:?}", check.problem);
        assert_eq!(check.frames, 1);
        // The same frame after padding is fine.
        let mut padded = log.bytes.clone();
        padded.resize(padded.len() + 20, 0);
        padded.extend(raw_frame(1, 0, 100, &payload));
        assert_eq!(check_log(&padded, None).state, LogState::Open);
        // A zero word at a block start skips the whole block; junk later in it is an error.
        let mut skip = Log::new();
        skip.bytes.resize(3 * BLOCK_BYTES, 0);
        let at = skip.offset();
        append_frame(&mut skip.bytes, at, MATCH, 0, 0, FrameKind::Delta, 50);
        assert_eq!(check_log(&skip.bytes, None).state, LogState::Open);
        skip.bytes[BLOCK_BYTES + 100] = 9;
        let check = check_log(&skip.bytes, None);
        assert_eq!(check.state, LogState::Damaged);
        assert_eq!(check.problem.map(|p| p.0), Some(BLOCK_U64 + 100));
    }

    #[test]
    fn a_file_of_zeros_is_torn_anything_else_without_header_damaged() {
        // A crash after create (and preallocation), before the header was written.
        for len in [0, 1, 100, BLOCK_BYTES, 3 * BLOCK_BYTES + 7, 256 << 10] {
            let check = check_log(&vec![0u8; len], Some(MATCH));
            assert_eq!(check.state, LogState::Torn, "{len} zero bytes");
            assert_eq!(check.frames, 0);
            assert_eq!(check.match_id, None);
            let (at, why) = check.problem.unwrap();
            assert_eq!(at, 0);
            assert!(why.contains("no file header"), "{why}");
        }
        // One non-zero byte anywhere, with no valid header: damaged.
        for at in [0, 31, 32, BLOCK_BYTES - 1, BLOCK_BYTES, 2 * BLOCK_BYTES + 5] {
            let mut bytes = vec![0u8; 3 * BLOCK_BYTES];
            bytes[at] = 1;
            assert_eq!(
                check_log(&bytes, None).state,
                LogState::Damaged,
                "byte at {at}"
            );
        }
        // A valid log whose header block was lost (zeros) while its frames remain: damaged.
        let mut log = varied_log(&mut Rng(3), 10, 500);
        log.bytes[..BLOCK_BYTES].fill(0);
        let check = check_log(&log.bytes, Some(MATCH));
        assert_eq!(check.state, LogState::Damaged);
        assert_eq!(check.problem.map(|p| p.0), Some(0));
    }

    #[test]
    fn no_panics_on_any_bytes() {
        let mut rng = Rng(99);
        let mut log = varied_log(&mut rng, 36, 600);
        log.seal();
        let bytes = log.bytes;
        for len in (0..bytes.len())
            .step_by(13)
            .chain(bytes.len() - 64..bytes.len())
        {
            let check = check_log(&bytes[..len], None);
            assert_ne!(check.state, LogState::Sealed);
            let _ = for_each_frame(&bytes, len as u64, |_| {});
        }
        for round in 0..3000 {
            let mut mutated = bytes.clone();
            for _ in 0..rng.range(1, 8) {
                let x = rng.range(0, mutated.len() as u64 - 1) as usize;
                mutated[x] = rng.next() as u8;
            }
            if round % 3 == 0 {
                mutated.truncate(rng.range(0, mutated.len() as u64) as usize);
            }
            let check = check_log(&mutated, Some(MATCH));
            assert!(check.valid_end_offset as usize <= mutated.len().max(BLOCK_BYTES));
        }
        // Random bytes behind a valid header, and hostile lengths.
        for _ in 0..200 {
            let mut junk = bytes[..BLOCK_BYTES].to_vec();
            junk.extend((0..rng.range(0, 20_000)).map(|_| rng.next() as u8));
            let _ = check_log(&junk, None);
            let mut hostile = bytes[..BLOCK_BYTES].to_vec();
            for _ in 0..50 {
                hostile.extend(FRAME_MAGIC.to_le_bytes());
                hostile.extend((rng.next() as u32).to_le_bytes());
                hostile.extend(rng.next().to_le_bytes());
            }
            let _ = check_log(&hostile, None);
        }
        let _ = check_log(&[], None);
        let _ = for_each_frame(&bytes, 0, |_| {});
    }
}
