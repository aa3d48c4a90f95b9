//! Fuzzes the joblog reader (`joblog::parse`: the library's journal reader,
//! `fanout::journal::parse`, with the command's GNU parallel format), the
//! part of `--resume` that reads a file a killed run may have torn.
//!
//! Checked, besides "no panic": the valid prefix is a prefix of the input
//! that ends at a line boundary; anything after it is only a torn last line;
//! and every record read back, written out again with `to_line`, reads back
//! to the same record (same seq, exit value, signal, bytes, command).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/fanout-cli/src/joblog.rs"]
mod joblog;

fuzz_target!(|data: &[u8]| {
    // Half the inputs get a valid header, so that records are reached.
    let bytes: Vec<u8> = match data.split_first() {
        Some((&b, rest)) if b & 1 == 0 => {
            let mut v = joblog::HEADER.as_bytes().to_vec();
            v.extend_from_slice(rest);
            v
        }
        _ => data.to_vec(),
    };
    let Ok(contents) = joblog::parse(&bytes) else {
        return;
    };
    let valid = contents.valid_len as usize;
    assert!(valid <= bytes.len());
    assert!(valid == 0 || bytes[valid - 1] == b'\n');
    if valid < bytes.len() {
        assert!(contents.torn, "bytes after the valid prefix but not torn");
        // What is cut off holds at most one line.
        let tail = &bytes[valid..];
        let newlines = tail.iter().filter(|&&b| b == b'\n').count();
        assert!(newlines == 0 || (newlines == 1 && tail.ends_with(b"\n")));
    }
    let mut again = joblog::HEADER.as_bytes().to_vec();
    for (seq, record) in &contents.records {
        assert_eq!(*seq, record.seq);
        again.extend_from_slice(record.to_line().as_bytes());
    }
    let reread = joblog::parse(&again).expect("re-reading written records");
    assert!(!reread.torn);
    assert_eq!(reread.records.len(), contents.records.len());
    for ((_, a), (_, b)) in contents.records.iter().zip(&reread.records) {
        assert_eq!(
            (a.seq, a.exitval, a.signal, a.received, &a.command),
            (b.seq, b.exitval, b.signal, b.received, &b.command)
        );
    }
});
