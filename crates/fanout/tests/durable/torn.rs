//! A journaled run resumed from a journal cut at every byte: it recalls
//! exactly the records that were whole, runs every other input once, and
//! the journal it leaves holds each key once, on lines of their own.

use fanout::journal::{parse, sidecar_path, RecordedFailures};

use super::{expected, journal_path, key, plain, run_all_over, Format};

/// The key of a record line (`{"key":"key-N",...}`), read without the
/// journal's own parser.
fn key_of_line(line: &[u8]) -> String {
    let text = std::str::from_utf8(line).unwrap();
    let start = text.find("key-").unwrap();
    let digits: String = text[start + 4..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    format!("key-{digits}")
}

#[tokio::test]
async fn a_run_resumed_from_a_journal_cut_at_every_byte_recalls_exactly_its_whole_records() {
    let (_dir, path) = journal_path();
    let first: Vec<u64> = (0..4).collect();
    run_all_over(&path, "torn", &first, RecordedFailures::Rerun).await;
    let full = std::fs::read(&path).unwrap();
    let sidecar = std::fs::read(sidecar_path(&path)).unwrap();
    let header_len = b"fanout-journal 1\n".len();
    // Where each record line ends (after its newline), and its key.
    let mut lines = Vec::new();
    let mut start = header_len;
    for (at, &byte) in full.iter().enumerate().skip(header_len) {
        if byte == b'\n' {
            lines.push((at + 1, key_of_line(&full[start..at])));
            start = at + 1;
        }
    }
    assert_eq!(lines.len(), first.len());
    let all: Vec<u64> = (0..6).collect();

    for cut in 0..=full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        std::fs::write(sidecar_path(&path), &sidecar).unwrap();
        let whole: Vec<String> = lines
            .iter()
            .filter(|(end, _)| *end <= cut)
            .map(|(_, k)| k.clone())
            .collect();

        let (outcomes, recalled, ran) =
            run_all_over(&path, "torn", &all, RecordedFailures::Rerun).await;
        for (i, ((k, outcome), recalled)) in outcomes.iter().zip(&recalled).enumerate() {
            assert_eq!(*k, key(i as u64), "cut at {cut}");
            assert_eq!(plain(outcome), expected(i as u64), "cut at {cut}");
            assert_eq!(*recalled, whole.contains(k), "cut at {cut}: input {i}");
        }
        let expected_ran: Vec<u64> = all
            .iter()
            .copied()
            .filter(|&i| !whole.contains(&key(i)))
            .collect();
        assert_eq!(
            ran, expected_ran,
            "cut at {cut}: each input not recorded runs once"
        );

        // The records kept are untouched, the torn line is gone, and every
        // key is recorded once, on a line of its own.
        let after = std::fs::read(&path).unwrap();
        let valid = if cut < header_len {
            0
        } else {
            full[..cut]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1)
        };
        assert_eq!(&after[..valid], &full[..valid], "cut at {cut}");
        let contents = parse(&Format::new(), &after).unwrap();
        assert!(!contents.torn, "cut at {cut}");
        let mut keys: Vec<String> = contents.records.into_iter().map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(
            keys,
            all.iter().map(|&i| key(i)).collect::<Vec<_>>(),
            "cut at {cut}"
        );
    }
}
