//! Tandem's fuzz entry points (see `README.md`). The same functions run in the normal test
//! suite through `#[path]` includes, so every target's regressions and a bounded proptest
//! byte-fuzz run on every `cargo test`.

pub mod archive_targets;
pub mod wire_targets;
