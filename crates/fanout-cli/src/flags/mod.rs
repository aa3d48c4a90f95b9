//! Turning raw arguments into a validated [`HiArgs`]: clap parses the
//! options ([`lowargs`]), then [`hiargs`] checks values and reads inputs.
//! The `--halt` policy, parsed here, also decides when a run halts.

mod config;
mod gnu;
mod halt;
mod hiargs;
mod lowargs;

pub(crate) use halt::{Halt, HaltWhen, Halting, Tally};
pub(crate) use hiargs::{
    HiArgs, OutputMode, Parsed, PipeSetup, RemoteArgs, ResultsSpec, Resume, TableKind,
};
