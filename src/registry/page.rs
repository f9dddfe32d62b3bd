//! The live page at `GET /`: one embedded HTML file, no build step and no external assets.
//!
//! It lists services and instances (health, last beat, last probe, lease, picks, drain mark,
//! weight, check, tags, meta) from the JSON listings, and keeps each service current with a watch, so a change shows within a second.

/// The page, served as is.
pub const HTML: &str = include_str!("page.html");
