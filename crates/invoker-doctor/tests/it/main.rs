//! End-to-end tests of the `invoker-doctor` crate, in one test binary (one link).

mod cli;
mod docs;
mod fixtures;
mod gcloud;
mod incidents;
mod live;
mod pastes;
mod scan;
mod support;
