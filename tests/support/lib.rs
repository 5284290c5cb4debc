//! Vienna e2e support (being written).
