//! Storage limits (issue 16, section 4).
