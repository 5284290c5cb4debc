//! The HTTP admin endpoint: `/healthz`, `/metrics` and the read-only JSON API under `/api/v1/`.

mod api;
mod http;
pub mod metrics;

pub use api::{AdminState, router};
pub use http::serve;
