//! Transport counters.

use std::net::SocketAddr;

/// Counts of traffic and of every reason a datagram or message was dropped.
///
/// Plain `u64`s owned by the transport (single-threaded duty cycle); the node copies them to
/// its control file. Nothing here is ever reset by the transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportCounters {
    /// Datagrams received (valid or not).
    pub datagrams_in: u64,
    /// Bytes received (whole datagrams).
    pub bytes_in: u64,
    /// Datagrams handed to the kernel.
    pub datagrams_out: u64,
    /// Bytes handed to the kernel.
    pub bytes_out: u64,
    /// Messages delivered to the caller.
    pub messages_in: u64,
    /// Messages accepted for sending.
    pub messages_out: u64,
    /// Fragments received (valid).
    pub fragments_in: u64,
    /// Fragments sent.
    pub fragments_out: u64,
    /// Duplicate fragments ignored.
    pub duplicate_fragments: u64,
    /// Dropped: too short, or length field mismatch.
    pub dropped_bad_length: u64,
    /// Dropped: longer than this endpoint's `recv_max_datagram` (a sender's `mtu` is larger:
    /// everything it sends that long is lost until the two agree).
    pub dropped_oversize: u64,
    /// Dropped: CRC-32C mismatch.
    pub dropped_bad_checksum: u64,
    /// Dropped: wrong magic or version.
    pub dropped_bad_version: u64,
    /// Dropped: inconsistent flags / fragment fields / wrong stream.
    pub dropped_bad_header: u64,
    /// Dropped: another cluster id.
    pub dropped_wrong_cluster: u64,
    /// Dropped: unknown member, or member id not matching the source address.
    pub dropped_unknown_member: u64,
    /// Messages dropped because not all fragments arrived before the timeout.
    pub dropped_reassembly_timeout: u64,
    /// Fragments dropped because reassembly buffers were full, the message was too large,
    /// or fragments of one message disagreed.
    pub dropped_reassembly_overflow: u64,
    /// Send attempts refused with `WouldBlock` (queue full).
    pub send_would_block: u64,
    /// Datagrams the kernel refused (dropped, counted).
    pub send_errors: u64,
    /// Receive errors other than "no data".
    pub recv_errors: u64,
}

impl TransportCounters {
    /// Counts a datagram from `from` longer than `limit` (this endpoint's `recv_max_datagram`),
    /// and says so in the log the 1st, 2nd, 4th, 8th, ... time: a misconfigured sender loses
    /// all such traffic, and an operator must see why without the log growing at the
    /// datagrams' rate.
    pub(crate) fn note_oversize(&mut self, from: Option<SocketAddr>, limit: usize) {
        self.dropped_oversize += 1;
        if self.dropped_oversize.is_power_of_two() {
            let from = from.map_or_else(|| "an unknown address".to_owned(), |a| a.to_string());
            tracing::warn!(
                %from,
                limit,
                dropped = self.dropped_oversize,
                "dropped a datagram longer than this endpoint accepts (recv_max_datagram); \
                 every sender's mtu must be at most its receivers' limit"
            );
        }
    }

    /// Sum of every `dropped_*` counter.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_bad_length
            + self.dropped_oversize
            + self.dropped_bad_checksum
            + self.dropped_bad_version
            + self.dropped_bad_header
            + self.dropped_wrong_cluster
            + self.dropped_unknown_member
            + self.dropped_reassembly_timeout
            + self.dropped_reassembly_overflow
    }
}
