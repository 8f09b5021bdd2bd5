//! The API a Tandem service author programs against.
#![deny(missing_docs)]
