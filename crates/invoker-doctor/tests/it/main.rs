//! End-to-end tests of the `invoker-doctor` crate, in one test binary (one link).

mod cli;
mod docs;
mod fixtures;
mod live;
mod scan;
mod support;
