//! Conference core (next).
