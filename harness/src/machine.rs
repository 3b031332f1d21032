//! Machine facts (being written)
