//! `--pipe` and `--pipepart`: input split into blocks of records, each
//! block written to a job's standard input.
//!
//! With `--pipe`, a reader thread cuts standard input ([`chunker`]) and
//! hands blocks over a channel that holds one block; job `N` takes block
//! `N` when it starts. So at most `-j` blocks are being written to jobs, one
//! is waiting and one is being read: memory stays within about
//! `(jobs + 2) × --block`. Jobs made after the input ended take no block
//! and do not run, as GNU parallel's "virgin" jobs. With `--round-robin`,
//! `-j` jobs each take block after block until the input ends. With
//! `--group-by`, standard input first goes through GNU parallel's Perl
//! filter ([`group_by`]), which marks where a column's value changes.
//!
//! With `--pipepart -a FILE`, the file is cut at record boundaries near
//! multiples of the block size without reading it all, and each job's
//! stdin is fed with `splice(2)` straight from the file.

mod chunker;
mod feed;
mod group_by;

pub(crate) use chunker::{Cutting, Separators};
pub(crate) use feed::{
    is_seekable, part_positions, start_tee, Block, Feed, Part, Reading, Stdin, TeeSlot,
};
pub(crate) use group_by::GroupBy;
