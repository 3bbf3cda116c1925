//! Evidence for invoker-doctor: the types every rule reads, and the parsers of the
//! evidence-bundle formats (exactly what the gcloud commands of the contract print).
//!
//! Invariant: nothing in this crate does network I/O. The only I/O is reading a bundle
//! directory in [`bundle`].

pub mod audit;
pub mod bundle;
pub mod caller;
pub mod context;
pub mod denial;
pub mod deny;
pub mod doc;
pub mod evidence;
pub mod facts;
#[cfg(test)]
mod fuzz;
pub mod gathered;
pub mod iam;
pub mod inventory;
pub mod logs;
pub mod orgpolicy;
pub mod paste;
pub mod principal;
pub mod regions;
pub mod roles;
pub mod service;
pub mod time;
pub mod token;
pub mod troubleshoot;

pub use evidence::{Evidence, Inputs};
pub use gathered::Gathered;
pub use principal::Principal;
