//! When work runs again: retries with backoff (scheduled runs come later).

pub mod retry;
