//! A journal cut at every byte: a torn last record is never read as a
//! record, and is cut off before the next one is appended, so the two never
//! glue into one line.

use proptest::prelude::*;

use super::{format, journal_path, key, keys_of, options};
use fanout::journal::{parse, sidecar_path};

#[test]
fn a_journal_cut_at_every_byte_resumes_with_exactly_its_complete_records() {
    let (_dir, path) = journal_path();
    super::journal_with(&path, "a", 4);
    let full = std::fs::read(&path).unwrap();
    let sidecar = std::fs::read(sidecar_path(&path)).unwrap();
    let header_len = b"fanout-journal 1\n".len();
    for cut in 0..=full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        std::fs::write(sidecar_path(&path), &sidecar).unwrap();
        let complete = full[..cut].iter().filter(|&&b| b == b'\n').count();
        let expected: Vec<String> = (0..complete.saturating_sub(1) as u64).map(key).collect();
        let at_boundary = cut == 0 || full[cut - 1] == b'\n';

        let opened = options("a").resume(&path, format()).unwrap();
        assert_eq!(opened.torn, !at_boundary, "cut at {cut}");
        let mut journal = opened.journal;
        assert_eq!(keys_of(&journal.load().unwrap()), expected, "cut at {cut}");

        // The next record lands on a line of its own.
        journal.record(&key(99), &Ok(99)).unwrap();
        drop(journal);
        let after = std::fs::read(&path).unwrap();
        let contents = parse(&format(), &after).unwrap();
        assert!(!contents.torn, "cut at {cut}");
        let mut expected = expected;
        expected.push(key(99));
        assert_eq!(keys_of(&contents.records), expected, "cut at {cut}");
        let kept = if cut < header_len { 0 } else { cut };
        let valid = if at_boundary {
            kept
        } else {
            full[..cut]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
        };
        assert_eq!(&after[..valid], &full[..valid], "cut at {cut}");
    }
}

fn record_line(i: u64) -> String {
    format!("{{\"key\":\"{}\",\"ok\":{i}}}\n", key(i))
}

proptest! {
    /// Whatever follows the last complete record without a newline (a
    /// write cut short, garbage a power cut left), and whatever single line
    /// ends the file, only the complete records are read.
    #[test]
    fn no_tail_is_ever_read_as_a_record(
        n in 0u64..6,
        tail in proptest::collection::vec(
            prop_oneof![
                Just(b'{'), Just(b'}'), Just(b'"'), Just(b':'), Just(b','), Just(b'0'),
                Just(b'9'), Just(b'k'), Just(b'e'), Just(b'y'), Just(0u8), Just(0xff),
            ],
            0..40,
        ),
        cut_from_record in any::<bool>(),
    ) {
        let mut body = b"fanout-journal 1\n".to_vec();
        for i in 0..n {
            body.extend_from_slice(record_line(i).as_bytes());
        }
        let mut bytes = body.clone();
        if cut_from_record {
            let line = record_line(n);
            let cut = tail.len() % line.len();
            bytes.extend_from_slice(&line.as_bytes()[..cut]);
        } else {
            bytes.extend_from_slice(&tail);
        }
        let contents = parse(&format(), &bytes).unwrap();
        let expected: Vec<String> = (0..n).map(key).collect();
        prop_assert_eq!(keys_of(&contents.records), expected);
        prop_assert_eq!(contents.valid_len as usize, body.len());
        prop_assert_eq!(contents.torn, bytes.len() > body.len());
    }

    /// Any bytes at all: no panic, and what is read is a line-bounded
    /// prefix followed by at most one line.
    #[test]
    fn parse_never_panics_and_its_valid_prefix_ends_a_line(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        with_header in any::<bool>(),
    ) {
        let mut input = if with_header { b"fanout-journal 1\n".to_vec() } else { Vec::new() };
        input.extend_from_slice(&bytes);
        if let Ok(contents) = parse(&format(), &input) {
            let valid = contents.valid_len as usize;
            prop_assert!(valid <= input.len());
            prop_assert!(valid == 0 || input[valid - 1] == b'\n');
            let tail = &input[valid..];
            let newlines = tail.iter().filter(|&&b| b == b'\n').count();
            prop_assert!(newlines == 0 || (newlines == 1 && tail.ends_with(b"\n")));
            prop_assert_eq!(contents.torn, !tail.is_empty());
        }
    }
}
