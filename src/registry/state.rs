//! Registration state.
