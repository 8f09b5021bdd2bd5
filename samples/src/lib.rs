//! Tandem samples.
