//! Many mirrors in one run: bounded concurrency, per-host caps, retries.
//!
//! SKELETON: being written; see issue 10.
