//! The public actor API.

pub mod actor_cell;
