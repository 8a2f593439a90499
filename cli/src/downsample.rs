//! Downsampling.
