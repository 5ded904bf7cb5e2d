//! The rules of the payment domain, free of I/O: money, identity of callers,
//! cursors, what makes two requests the same, and the errors a request can
//! meet.

pub mod auth;
pub mod cursor;
pub mod error;
pub mod fingerprint;
pub mod money;
pub mod validate;
