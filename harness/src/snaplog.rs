//! SNAPLOG1 (being written)
