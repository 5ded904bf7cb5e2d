//! The rules of the payment domain, free of I/O: money, identity of callers,
//! cursors and the errors a request can meet.

pub mod auth;
pub mod cursor;
pub mod error;
pub mod money;
pub mod validate;
