//! `--group-by`: standard input goes through a Perl filter that marks
//! where the value of a column (or of a Perl expression on the line)
//! changes, and `--pipe` cuts at those marks, so records with the same
//! value stay in one block.
//!
//! This is GNU parallel's own mechanism: a `perl -a -F<colsep> -pe` loop
//! prints a random 20-character separator before each line whose value
//! differs from the previous line's, and the blocks are cut with that
//! separator as `--recstart`, removed again (`--remove-rec-sep`). Running
//! the same Perl gives the same values, with `-F`'s and `split`'s rules.
//! When the column is given by name, the first line (the header) is read
//! before the filter starts and prefixes every block.

use std::io::Read;
use std::os::fd::AsFd;
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::{bail, Context};
use regex::Regex;

/// `--group-by SPEC`, ready to start.
#[derive(Debug, Clone)]
pub(crate) struct GroupBy {
    /// The column number or name, then an optional Perl expression.
    pub(crate) spec: String,
    /// `--colsep` (default a TAB), as given.
    pub(crate) colsep: String,
    /// The separator the filter inserts (the blocks' `--recstart`).
    pub(crate) separator: Vec<u8>,
}

/// The running filter: read its output instead of standard input.
#[derive(Debug)]
pub(crate) struct GroupFilter {
    /// The first line of the input, when the column is given by name.
    pub(crate) header: Option<Vec<u8>>,
    child: Child,
    stdout: ChildStdout,
}

impl GroupBy {
    /// A `--group-by SPEC` with a fresh random separator.
    pub(crate) fn new(spec: &str, colsep: Option<&str>) -> GroupBy {
        GroupBy {
            spec: spec.to_owned(),
            colsep: colsep.unwrap_or("\t").to_owned(),
            separator: random_separator(),
        }
    }

    /// Reads the header line (column given by name) and starts the filter
    /// on standard input.
    ///
    /// # Errors
    /// The named column is not in the header, or Perl cannot be started.
    pub(crate) fn start(&self) -> anyhow::Result<GroupFilter> {
        let by_name = is_name(&self.spec);
        let header = if by_name {
            Some(read_line_unbuffered()?)
        } else {
            None
        };
        let (column, expr) = column_and_expr(
            &self.spec,
            header.as_deref().unwrap_or_default(),
            &self.colsep,
        )?;
        let mut perl = Command::new("perl");
        if takes_column(&self.spec) {
            perl.arg("-a")
                .arg(format!("-F{}", perl_f_pattern(&self.colsep)));
        }
        let value = match column {
            // GNU parallel numbers columns from 1 and takes one off any
            // column but 0, so column 0 is the first one too.
            Some(c) => format!("$F[{}]", if c != 0 { c - 1 } else { c }),
            None => "$_".to_owned(),
        };
        let separator = String::from_utf8_lossy(&self.separator);
        perl.arg("-pe").arg(format!(
            "BEGIN{{ $last = \"{separator}\"; }}{{ local $_={value}; {expr}; \
             if(($last) ne $_) {{ print \"{separator}\"; $last = $_; }} }}"
        ));
        let mut child = perl
            .stdin(Stdio::inherit())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start perl for --group-by")?;
        let stdout = child.stdout.take().context("perl's output")?;
        Ok(GroupFilter {
            header,
            child,
            stdout,
        })
    }
}

impl GroupFilter {
    /// Waits for Perl once its output is read; `stopped` when the run
    /// stopped reading it (Perl is killed then, and its end is no error).
    ///
    /// # Errors
    /// Perl failed (it said why on stderr).
    pub(crate) fn finish(mut self, stopped: bool) -> anyhow::Result<()> {
        drop(self.stdout);
        if stopped {
            let _ = self.child.kill();
        }
        let status = self.child.wait().context("waiting for --group-by's perl")?;
        if !status.success() && !stopped {
            bail!("--group-by's perl filter failed ({status}): see its message above");
        }
        Ok(())
    }
}

impl Read for GroupFilter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stdout.read(buf)
    }
}

/// GNU parallel reads the header for a column given by name (a Perl
/// identifier, then white space or the end).
fn is_name(spec: &str) -> bool {
    let re = Regex::new(r"(?i)^[a-z_][a-z_0-9]*(\s|$)").expect("valid");
    re.is_match(spec)
}

/// Whether Perl splits the line into `@F` (a column number or name).
fn takes_column(spec: &str) -> bool {
    let re = Regex::new(r"(?i)^[a-z0-9_]+(\s|$)").expect("valid");
    re.is_match(spec)
}

/// GNU parallel's `column_perlexpr`: the column number (from 1), looked up
/// in the header when given by name, and the Perl expression after it.
fn column_and_expr(
    spec: &str,
    header: &[u8],
    colsep: &str,
) -> anyhow::Result<(Option<i64>, String)> {
    let column_like = Regex::new(r"(?i)^[-a-z0-9_]+(\s|$)").expect("valid");
    if !column_like.is_match(spec) {
        return Ok((None, spec.to_owned()));
    }
    let number = Regex::new(r"^(-?\d+)(\s|$)").expect("valid");
    if let Some(c) = number.captures(spec) {
        let n: i64 = c[1]
            .parse()
            .with_context(|| format!("bad --group-by column {:?}", &c[1]))?;
        return Ok((Some(n), spec[c[0].len()..].to_owned()));
    }
    let name = Regex::new(r"(?i)^([a-z0-9_]+)(\s+|$)").expect("valid");
    let Some(c) = name.captures(spec) else {
        return Ok((None, spec.to_owned()));
    };
    let wanted = &c[1];
    let split = Regex::new(colsep).with_context(|| {
        format!("--colsep {colsep:?} is a regular expression fanout cannot use")
    })?;
    let header = String::from_utf8_lossy(header);
    let names = crate::input::split_columns(&header, &split);
    // Perl's hash slice: a name given twice counts at its last place.
    let Some(at) = names.iter().rposition(|n| &**n == wanted) else {
        bail!(
            "Column '{wanted}' {colsep} not found in header: the header line is {:?}",
            header.trim_end_matches('\n')
        );
    };
    Ok((Some(at as i64 + 1), spec[c[0].len()..].to_owned()))
}

/// The `-F` pattern GNU parallel gives Perl for a column separator: TAB,
/// `"` and space escaped (`-F` cannot hold literal white space).
fn perl_f_pattern(colsep: &str) -> String {
    colsep
        .replace('\t', "\\t")
        .replace('"', "\\\"")
        .replace(' ', "\\040{1}")
}

/// Reads standard input up to and including the first newline, one byte at
/// a time, so that nothing after it is taken from the filter.
fn read_line_unbuffered() -> anyhow::Result<Vec<u8>> {
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot read standard input")?;
    let mut file = std::fs::File::from(fd);
    let mut line = Vec::new();
    let mut byte = [0u8];
    loop {
        match file.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("cannot read standard input"),
        }
    }
    Ok(line)
}

/// Twenty random letters and digits, as GNU parallel's separator.
fn random_separator() -> Vec<u8> {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut seed = [0u8; 20];
    // SAFETY: the buffer is valid for `seed.len()` bytes.
    let got = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if got != seed.len() as isize {
        // No entropy source: the time and the process id still make a
        // separator no input is likely to hold.
        let mut x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        for b in &mut seed {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    seed.iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_expressions_are_split_as_gnu_parallel_splits_them() {
        let header = b"UserID, Consumption\n";
        assert_eq!(
            column_and_expr("1", header, ",").unwrap(),
            (Some(1), String::new())
        );
        assert_eq!(
            column_and_expr("UserID s/\\D//g", header, ",").unwrap(),
            (Some(1), "s/\\D//g".to_owned())
        );
        assert_eq!(
            column_and_expr("2 $_ %= 3", header, ",").unwrap(),
            (Some(2), "$_ %= 3".to_owned())
        );
        assert_eq!(
            column_and_expr("$_ = substr($_,0,1)", header, ",").unwrap(),
            (None, "$_ = substr($_,0,1)".to_owned())
        );
        let err = column_and_expr("Missing", header, ",").unwrap_err();
        assert!(err.to_string().contains("Column 'Missing'"), "{err}");
    }

    #[test]
    fn separators_are_twenty_letters_or_digits() {
        let s = random_separator();
        assert_eq!(s.len(), 20);
        assert!(s.iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(s, random_separator());
    }
}
