//! The fault switches ([`Faults`], set with [`super::TestServer::faults`]):
//! answers (5xx, 429, 413, 409, 401), resets, a black hole, late answers and
//! the gathering of concurrent requests. The connection applies those
//! decided before the body is read (`conn.rs`), the answer the others
//! (`answer.rs`).

use std::time::Duration;

/// Random faults, drawn per request from a seeded generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomFaults {
    pub p_5xx: f64,
    pub p_429: f64,
    pub p_reset: f64,
    /// Applied, but answered after `late` (after the client's timeout).
    pub p_late: f64,
    pub seed: u64,
}

/// A rule answering `status` to requests whose path contains `path`.
#[derive(Debug, Clone)]
pub struct Reject {
    pub path: String,
    pub status: u16,
    /// How many times (`u32::MAX`: always).
    pub times: u32,
}

/// Fault switches (all off by default).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The next N requests fail with `fail_status` (500 or 503).
    pub fail_next: u32,
    pub fail_status: u16,
    pub random: Option<RandomFaults>,
    /// `Retry-After` sent with 429 (and 503) answers.
    pub retry_after: Option<String>,
    /// The next N requests get their connection reset in the middle of the body.
    pub reset_next: u32,
    /// Accept connections and never answer.
    pub black_hole: bool,
    /// Answer 503 to everything (the server is "down").
    pub down: bool,
    pub reject: Vec<Reject>,
    /// 413 when a data request carries more items than this.
    pub max_items: Option<usize>,
    /// Delay of late answers.
    pub late: Duration,
    /// Answer 401 unless `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Answer 409 to the next N node creations.
    pub conflict_next: u32,
    /// Apply the next N data requests but answer them `late` later.
    pub late_next: u32,
    /// Answer 503 to the next N file uploads.
    pub fail_files: u32,
    /// Answer this status to every file upload.
    pub reject_files: Option<u16>,
    /// Hold each data request until this many are in the server at once, or
    /// `gather_wait` passed; once reached (or timed out) it is switched off.
    pub gather: u32,
    pub gather_wait: Duration,
}
