//! End-to-end tests of the `invoker-doctor` crate, in one test binary (one link).

mod cli;
mod docs;
mod fixtures;
mod hostile;
mod live;
mod support;
