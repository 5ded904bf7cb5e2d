//! The rules of the payment domain, free of I/O: money, identity of callers,
//! cursors, what makes two requests the same, a payment's metadata, and the
//! errors a request can meet.

pub mod auth;
pub mod cursor;
pub mod error;
pub mod fingerprint;
pub mod metadata;
pub mod money;
pub mod validate;
