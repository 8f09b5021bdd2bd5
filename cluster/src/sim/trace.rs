//! The trace hash: a running FNV-1a over everything that happened (every delivered message and
//! every command a core emitted), so `--start-seed S --seeds 1 -v` shows that a run reproduces
//! bit for bit.

/// FNV-1a 64 offset basis.
pub const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;

/// FNV-1a over `bytes`, continuing from `h`.
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// FNV-1a of a u64 (little-endian), continuing from `h`.
pub fn fnv_u64(h: u64, v: u64) -> u64 {
    fnv1a(h, &v.to_le_bytes())
}

/// The running trace hash of one scenario.
#[derive(Debug, Clone, Copy)]
pub struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> Self {
        Self(FNV_OFFSET)
    }
}

impl TraceHash {
    /// Mixes a tag and some bytes in.
    pub fn bytes(&mut self, tag: u8, bytes: &[u8]) {
        self.0 = fnv1a(fnv1a(self.0, &[tag]), bytes);
    }

    /// Mixes a tag and a number in.
    pub fn num(&mut self, tag: u8, v: u64) {
        self.0 = fnv_u64(fnv1a(self.0, &[tag]), v);
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}
