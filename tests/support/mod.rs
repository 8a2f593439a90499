//! A test ML-Dash server on 127.0.0.1 (random port), std only: the
//! endpoints of ML-DASH.md §4 with answers shaped like the real server's
//! (19-digit ids as bare JSON numbers), a record of every request,
//! deduplication by `Idempotency-Key`, and switches for faults: answers
//! (5xx, 429, resets, black hole, late), a real outage
//! ([`TestServer::refuse_connections`]: the port is closed, connects are
//! refused), an idle timeout per connection (a client that stops mid-request
//! does not hold a worker forever) and a counting mode for long runs
//! ([`TestServer::set_counting`]: metric points are tallied, not kept).
//!
//! Used by the tests that talk to a server (each includes it with
//! `mod support;`), `cli/tests/sync.rs` and `examples/record_server.rs`
//! (with `#[path = ".../tests/support/mod.rs"]`). One file per concern:
//!
//! | file | what |
//! |---|---|
//! | `server.rs` | [`TestServer`]: the listener, its accept loop, outages, the idle timeout, what tests call |
//! | `conn.rs` | one connection: reading requests, black hole and reset, writing answers |
//! | `answer.rs` | one request's answer: in-flight count and `gather`, faults, idempotency |
//! | `faults.rs` | the fault switches ([`Faults`], [`RandomFaults`], [`Reject`]) |
//! | `state.rs` | what the server holds and tests query ([`State`], [`Request`], [`Tally`], [`StoredFile`]) |
//! | `routes.rs` | the endpoints: dispatch, parameters, logs, metrics, tracks, counting mode |
//! | `nodes.rs` | projects, folders, experiments and files as nodes; GraphQL |
//! | `multipart.rs` | `multipart/form-data` bodies ([`multipart`], [`Part`]) |
//! | `sink.rs` | helpers that drive the remote sink ([`config`], [`sync_options`], [`points`], ...) |
//! | `record.rs` | [`requests_json`]: the record for the differential harness |
#![allow(dead_code)]

mod answer;
mod conn;
mod faults;
mod multipart;
mod nodes;
mod record;
mod routes;
mod server;
mod sink;
mod state;

// Each test binary uses its own part of these.
#[allow(unused_imports)]
pub use self::{
    faults::{Faults, RandomFaults, Reject},
    multipart::{Part, multipart},
    record::requests_json,
    server::{IDLE_TIMEOUT, TestServer},
    sink::{TOKEN, census, config, peak_rss_kib, points, refs, sync_options, wait_unlocked},
    state::{Request, State, StoredFile, Tally},
};
