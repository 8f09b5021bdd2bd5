//! A read-only reader of a member's log directory.
//!
//! `tandem_archive::Log::open` recovers the log: it may zero a torn tail, delete segments
//! after it, write `log.meta` and create the next segment. A tool must never change what it
//! inspects (and must not race a running node's appends), so this module reads the segment
//! files with plain reads and validates every frame itself, following the formats the
//! archive documents (`tandem_archive`'s `frame`, `segment` and `log` modules):
//!
//! * `log/log.meta`: magic `TNDMLOG\0`, version 1, segment length, start position, CRC-32C;
//! * segments `<base position, 20 digits>.seg`, each exactly one segment length long;
//! * frames: 48-byte header (length, CRC-32C over the position, the length and bytes
//!   `8..length`, type, flags, version, reserved, term, session, sequence, timestamp),
//!   8-byte aligned; type 0 is padding closing a segment; length 0 ends the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tandem_archive::{FRAME_ALIGNMENT, HEADER_LEN, LOG_DIR_NAME, PADDING_FRAME_TYPE};

use crate::error::{Result, ToolError};

const META_FILE: &str = "log.meta";
const META_MAGIC: &[u8; 8] = b"TNDMLOG\0";
const META_VERSION: u32 = 1;
const META_LEN: usize = 36;
const SEGMENT_SUFFIX: &str = ".seg";
const FRAME_VERSION: u8 = 1;

/// The header fields of one frame, as the tool prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedFrame {
    /// Log position of the frame's first byte.
    pub position: u64,
    /// The frame type (the cluster's entry type code).
    pub frame_type: u16,
    /// Flags.
    pub flags: u8,
    /// Term the frame was appended in.
    pub term: u64,
    /// Client session id.
    pub session_id: u64,
    /// Sequence number.
    pub sequence: u64,
    /// Cluster timestamp.
    pub timestamp: i64,
    /// Payload length in bytes (the frame length less the 48-byte header).
    pub payload_len: u32,
}

impl ScannedFrame {
    /// Position just after the frame.
    pub fn next_position(&self) -> u64 {
        self.position + align(HEADER_LEN as u64 + u64::from(self.payload_len))
    }
}

/// How a scan ended.
#[derive(Debug)]
pub struct ScanEnd {
    /// Position after the last valid frame (the append position recovery would find).
    pub end_position: u64,
    /// Number of data frames seen.
    pub frames: u64,
    /// Payload bytes of the data frames seen.
    pub payload_bytes: u64,
    /// The first invalid data found, if the log does not end cleanly: an invalid frame,
    /// non-zero bytes after the end, a segment of the wrong length.
    pub problem: Option<ToolError>,
}

/// The log directory of a member, read-only.
#[derive(Debug)]
pub struct LogFiles {
    dir: PathBuf,
    segment_len_bytes: u64,
    start_position: u64,
    segments: BTreeMap<u64, PathBuf>,
}

/// What a frame decode found.
enum Decoded {
    Frame(ScannedFrame),
    Padding(u64),
    End,
    Invalid(&'static str),
}

impl LogFiles {
    /// Opens `<node dir>/log` read-only. `Ok(None)` when the directory has no log yet.
    ///
    /// # Errors
    /// [`ToolError::Corrupted`] for a damaged `log.meta`; I/O errors.
    pub fn open(node_dir: &Path) -> Result<Option<LogFiles>> {
        let dir = node_dir.join(LOG_DIR_NAME);
        let meta_path = dir.join(META_FILE);
        let bytes = match std::fs::read(&meta_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ToolError::io("read", &meta_path, e)),
        };
        let (segment_len_bytes, start_position) = decode_meta(&meta_path, &bytes)?;
        let mut segments = BTreeMap::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| ToolError::io("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ToolError::io("list", &dir, e))?;
            if let Some(base) = entry.file_name().to_str().and_then(parse_segment_name) {
                segments.insert(base, entry.path());
            }
        }
        Ok(Some(LogFiles {
            dir,
            segment_len_bytes,
            start_position,
            segments,
        }))
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment length recorded in `log.meta`.
    pub fn segment_len_bytes(&self) -> u64 {
        self.segment_len_bytes
    }

    /// The log's start position recorded in `log.meta`.
    pub fn start_position(&self) -> u64 {
        self.start_position
    }

    /// The segment files present: base position and path, ascending.
    pub fn segments(&self) -> &BTreeMap<u64, PathBuf> {
        &self.segments
    }

    /// The path of the segment holding `position`.
    pub fn segment_path(&self, position: u64) -> PathBuf {
        self.dir.join(format!(
            "{:020}{SEGMENT_SUFFIX}",
            position & !(self.segment_len_bytes - 1)
        ))
    }

    /// Total length of the segment files present.
    ///
    /// # Errors
    /// I/O errors.
    pub fn disk_usage_bytes(&self) -> Result<u64> {
        let mut total = 0u64;
        for path in self.segments.values() {
            let len = std::fs::metadata(path)
                .map_err(|e| ToolError::io("stat", path, e))?
                .len();
            total = total.saturating_add(len);
        }
        Ok(total)
    }

    /// Reads every frame from the log start, validating each (checksum, version, length,
    /// terms never decreasing), and calls `visit` for each data frame until it returns
    /// `false`. Stops at the end of the log or the first invalid data, which
    /// [`ScanEnd::problem`] reports. With `check_tail`, also checks that everything after
    /// the end is zero (what recovery would cut off is reported as a problem).
    ///
    /// # Errors
    /// I/O errors reading a segment.
    pub fn scan(
        &self,
        check_tail: bool,
        mut visit: impl FnMut(&ScannedFrame) -> bool,
    ) -> Result<ScanEnd> {
        let seg_len = self.segment_len_bytes;
        let mut end = ScanEnd {
            end_position: self.start_position,
            frames: 0,
            payload_bytes: 0,
            problem: None,
        };
        let mut position = self.start_position;
        let mut last_term = 0u64;
        loop {
            let base = position & !(seg_len - 1);
            let Some(path) = self.segments.get(&base) else {
                // The log ends at a segment boundary whose next segment is not created yet,
                // or a segment is missing after a frame that ended inside it.
                if position != base {
                    end.problem = Some(ToolError::corrupted(
                        self.segment_path(base),
                        position,
                        "segment file missing",
                    ));
                }
                return Ok(end);
            };
            let bytes = std::fs::read(path).map_err(|e| ToolError::io("read", path, e))?;
            if bytes.len() as u64 != seg_len {
                end.problem = Some(ToolError::corrupted(
                    path,
                    base,
                    format!("segment file is {} bytes, expected {seg_len}", bytes.len()),
                ));
                return Ok(end);
            }
            loop {
                let offset = (position - base) as usize;
                if offset == bytes.len() {
                    break;
                }
                match decode(&bytes[offset..], position) {
                    Decoded::Frame(f) if f.term < last_term => {
                        end.problem = Some(ToolError::corrupted(
                            path,
                            position,
                            format!("term {} after term {last_term}", f.term),
                        ));
                        return Ok(end);
                    }
                    Decoded::Frame(f) => {
                        last_term = f.term;
                        end.frames += 1;
                        end.payload_bytes += u64::from(f.payload_len);
                        position = f.next_position();
                        end.end_position = position;
                        if !visit(&f) {
                            return Ok(end);
                        }
                    }
                    Decoded::Padding(n) => position += n,
                    Decoded::End => {
                        if check_tail {
                            end.problem = self.check_after_end(base, &bytes, position)?;
                        }
                        return Ok(end);
                    }
                    Decoded::Invalid(reason) => {
                        end.problem = Some(ToolError::corrupted(path, position, reason));
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// Checks that nothing but zeros follows `end` in its segment and in later segments.
    fn check_after_end(&self, base: u64, bytes: &[u8], end: u64) -> Result<Option<ToolError>> {
        let offset = (end - base) as usize;
        if let Some(i) = bytes[offset..].iter().position(|&b| b != 0) {
            return Ok(Some(ToolError::corrupted(
                self.segment_path(base),
                end + i as u64,
                format!("non-zero bytes after the end of the log at {end}"),
            )));
        }
        for (&later, path) in self.segments.range(base + 1..) {
            let bytes = std::fs::read(path).map_err(|e| ToolError::io("read", path, e))?;
            if let Some(i) = bytes.iter().position(|&b| b != 0) {
                return Ok(Some(ToolError::corrupted(
                    path,
                    later + i as u64,
                    format!("non-zero bytes after the end of the log at {end}"),
                )));
            }
        }
        Ok(None)
    }
}

fn align(len: u64) -> u64 {
    let a = FRAME_ALIGNMENT as u64;
    (len + a - 1) & !(a - 1)
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// The frame checksum: CRC-32C over the position, the length field and bytes `8..`.
fn frame_crc(position: u64, frame: &[u8]) -> u32 {
    let mut prefix = [0u8; 12];
    prefix[..8].copy_from_slice(&position.to_le_bytes());
    prefix[8..].copy_from_slice(&frame[0..4]);
    crc32c::crc32c_append(crc32c::crc32c(&prefix), &frame[8..])
}

/// Decodes and validates the frame at `position`; `bytes` runs to the end of its segment.
fn decode(bytes: &[u8], position: u64) -> Decoded {
    if bytes.len() < HEADER_LEN {
        return if bytes.iter().all(|&b| b == 0) {
            Decoded::Padding(bytes.len() as u64)
        } else {
            Decoded::Invalid("non-zero bytes in a segment tail too short for a frame")
        };
    }
    let h = &bytes[..HEADER_LEN];
    let frame_len = u32_at(h, 0) as usize;
    if frame_len == 0 {
        return Decoded::End;
    }
    if frame_len < HEADER_LEN {
        return Decoded::Invalid("frame length shorter than the header");
    }
    if h[11] != FRAME_VERSION {
        return Decoded::Invalid("unknown frame format version");
    }
    if u32_at(h, 12) != 0 {
        return Decoded::Invalid("reserved header bytes are not zero");
    }
    let frame_type = u16_at(h, 8);
    let stored_crc = u32_at(h, 4);
    if frame_type == PADDING_FRAME_TYPE {
        if frame_len != bytes.len() || !frame_len.is_multiple_of(FRAME_ALIGNMENT) {
            return Decoded::Invalid("padding frame does not close the segment");
        }
        if frame_crc(position, h) != stored_crc {
            return Decoded::Invalid("checksum mismatch");
        }
        return Decoded::Padding(frame_len as u64);
    }
    if align(frame_len as u64) > bytes.len() as u64 {
        return Decoded::Invalid("frame extends past the end of its segment");
    }
    if frame_crc(position, &bytes[..frame_len]) != stored_crc {
        return Decoded::Invalid("checksum mismatch");
    }
    Decoded::Frame(ScannedFrame {
        position,
        frame_type,
        flags: h[10],
        term: u64_at(h, 16),
        session_id: u64_at(h, 24),
        sequence: u64_at(h, 32),
        timestamp: u64_at(h, 40) as i64,
        payload_len: (frame_len - HEADER_LEN) as u32,
    })
}

fn decode_meta(path: &Path, bytes: &[u8]) -> Result<(u64, u64)> {
    if bytes.len() != META_LEN {
        return Err(ToolError::corrupted(
            path,
            0,
            format!("{} bytes, expected {META_LEN}", bytes.len()),
        ));
    }
    if &bytes[0..8] != META_MAGIC {
        return Err(ToolError::corrupted(path, 0, "bad magic"));
    }
    if crc32c::crc32c(&bytes[..32]) != u32_at(bytes, 32) {
        return Err(ToolError::corrupted(path, 32, "checksum mismatch"));
    }
    let version = u32_at(bytes, 8);
    if version != META_VERSION {
        return Err(ToolError::corrupted(
            path,
            8,
            format!("unknown version {version}"),
        ));
    }
    let segment_len = u64_at(bytes, 16);
    if !segment_len.is_power_of_two() || segment_len < HEADER_LEN as u64 {
        return Err(ToolError::corrupted(
            path,
            16,
            format!("segment length {segment_len} is not a power of two"),
        ));
    }
    let start = u64_at(bytes, 24);
    if !start.is_multiple_of(FRAME_ALIGNMENT as u64) {
        return Err(ToolError::corrupted(
            path,
            24,
            format!("start position {start} not aligned"),
        ));
    }
    Ok((segment_len, start))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_archive::{FrameHeader, encode_frame};

    fn header(term: u64) -> FrameHeader {
        FrameHeader {
            frame_type: 4,
            flags: 0,
            term,
            session_id: 7,
            sequence: 9,
            timestamp: -3,
        }
    }

    #[test]
    fn decodes_what_the_archive_encodes_and_checks_the_position() {
        let mut frame = Vec::new();
        encode_frame(&mut frame, 4096, &header(2), b"hello");
        let mut bytes = frame.clone();
        bytes.resize(256, 0);
        match decode(&bytes, 4096) {
            Decoded::Frame(f) => {
                assert_eq!(f.term, 2);
                assert_eq!(f.session_id, 7);
                assert_eq!(f.sequence, 9);
                assert_eq!(f.timestamp, -3);
                assert_eq!(f.payload_len, 5);
                assert_eq!(f.next_position(), 4096 + 56);
            }
            _ => panic!("frame expected"),
        }
        assert!(matches!(
            decode(&bytes, 4104),
            Decoded::Invalid("checksum mismatch")
        ));
        for bit in 0..frame.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode(&b, 4096), Decoded::Frame(_)),
                "bit {bit} undetected"
            );
        }
        assert!(matches!(decode(&[0u8; 64], 0), Decoded::End));
        assert!(matches!(decode(&[0u8; 16], 0), Decoded::Padding(16)));
    }

    #[test]
    fn segment_names_parse() {
        assert_eq!(parse_segment_name("00000000000000065536.seg"), Some(65536));
        assert_eq!(parse_segment_name("65536.seg"), None);
        assert_eq!(parse_segment_name("00000000000000065536.seg.tmp"), None);
    }
}
