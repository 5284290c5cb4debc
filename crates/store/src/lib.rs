//! Vienna store (being written).
