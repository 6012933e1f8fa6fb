//! The public actor API.

pub mod actor_cell;
#[cfg(feature = "new-scheduler")]
pub mod message_invoker;
