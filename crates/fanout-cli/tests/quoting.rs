//! Quoting, tested by difference: whatever bytes an input holds, the shell
//! sees exactly that input.

mod common;

use common::{fanout, run};

/// Characters a shell treats specially (GNU parallel's QUOTING list and
/// more), mixed with plain ones.
const ALPHABET: &[char] = &[
    '(', ')', '$', '`', '\'', '"', '<', '>', ';', '|', '\\', '~', '&', '!', '?', ' ', '*', '{',
    '}', '#', '\t', '\n', '[', ']', '=', '%', '^', ',', ':', '@', '-', '.', '/', 'a', 'Z', '0',
    'é', '日',
];

#[test]
fn any_input_reaches_the_command_unchanged_through_the_shell() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let mut state = seed | 1;
    let mut rand = |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    let inputs: Vec<String> = (0..300)
        .map(|_| {
            (0..rand(12))
                .map(|_| ALPHABET[rand(ALPHABET.len())])
                .collect()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("r.json");
    // `printf` is a shell builtin, so this always goes through the shell,
    // with each input quoted by fanout.
    // -0: with the default delimiter, a newline in a ::: argument makes
    // two inputs, as in GNU parallel.
    let mut args = vec![
        "-0",
        "--results",
        results.to_str().unwrap(),
        "printf %s {}",
        ":::",
    ];
    args.extend(inputs.iter().map(String::as_str));
    let out = run(fanout(), &args, b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&results).unwrap();
    let mut seen = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let seq = v["Seq"].as_u64().unwrap() as usize;
        assert_eq!(
            v["Stdout"].as_str().unwrap(),
            inputs[seq - 1],
            "input {:?} (seed {seed})",
            inputs[seq - 1]
        );
        seen += 1;
    }
    assert_eq!(seen, inputs.len());
}
