//! The registry role.

pub mod state;
