//! Hand-written little-endian codecs: log frames and entry payloads, member-to-member
//! messages, client messages. Each format names its version; every decoder validates its
//! input and returns a [`crate::CodecError`] instead of panicking.

pub(crate) mod buf;
pub mod client;
pub mod entry;
pub mod frame;
pub mod peer;

pub use client::{
    Egress, EventCode, Ingress, MessageBatch, RejectCode, ReplyBatch, egress_messages,
};
pub use frame::{
    EntryType, FRAME_HEADER_LEN, Frame, FrameHeader, FrameIter, decode_frame, encode_frame,
    frame_len_aligned,
};
pub use peer::PeerMessage;
