//! Sources: where batches come from.

pub mod file;
