//! Tandem operator tools.
