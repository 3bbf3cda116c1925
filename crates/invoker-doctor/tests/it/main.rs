//! End-to-end tests of the `invoker-doctor` crate, in one test binary (one link).

mod cli;
mod docs;
mod faults;
mod fixtures;
mod gcloud;
mod hostile;
mod incidents;
pub(crate) mod live;
mod pastes;
mod scan;
mod secrets;
mod support;
