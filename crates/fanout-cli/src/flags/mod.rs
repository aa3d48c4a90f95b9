//! Turning raw arguments into a validated [`Config`]: clap parses the
//! options ([`lowargs`]), then [`hiargs`] checks values and reads inputs.

mod halt;
mod hiargs;
mod lowargs;

pub(crate) use halt::{HaltOn, HaltWhen};
pub(crate) use hiargs::{Config, Parsed, Resume};
