//! One long-lived `perl` process that evaluates GNU parallel's Perl
//! replacement expressions (`{= … =}`, `--rpl`, `--plus`) and `--filter`
//! exactly as GNU parallel (itself a Perl program) does: each expression is
//! compiled once as `sub { no strict; no warnings; my $job = shift; CODE }`
//! in package `Arg`, and run with `$_` set to the (trimmed) input, `@arg`
//! to all the job's inputs (from `$arg[1]`), and GNU's helpers available:
//! `Q()`, `pQ()`, `uq()`, `skip()`, `seq()`, `slot()`, `total_jobs()`,
//! `hash()`, the `yyyy_mm_dd…` date functions, `$job->seq()`,
//! `$job->slot()`, `$job->skip()`, `::uniq()`, `::make_regexp_ungreedy()`.
//! Variables persist from job to job, as in GNU parallel.
//!
//! Starting Perl costs a few milliseconds once per run; each job then costs
//! one round trip over two pipes.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{bail, Context};

use super::eval::{Evaluated, ExprId, Trim};
use crate::input::Arg;

/// The helper program. It reads requests on stdin and answers on stdout;
/// strings travel as a decimal length line followed by the bytes.
const SCRIPT: &str = r#"
# Compiled first, where no lexical variable is in scope: an expression such
# as `$_ = ++$n` must see the package variable $Arg::n, not a `my $n` of
# this script.
package Arg;
sub compile_one { return eval('sub { no strict; no warnings; my $job = shift; ' . $_[0] . ' }'); }
package main;
use strict;
use POSIX ();
binmode STDIN; binmode STDOUT;
$SIG{INT} = 'IGNORE'; $SIG{TERM} = 'IGNORE';
$SIG{__WARN__} = sub {};

sub rd_line { my $l = <STDIN>; defined $l or exit 0; chomp $l; return $l; }
sub rd_str {
    my $n = rd_line(); my $s = '';
    while (length($s) < $n) {
        my $got = read(STDIN, $s, $n - length($s), length($s));
        defined $got and $got > 0 or exit 0;
    }
    return $s;
}
sub wr_str { my $s = defined $_[0] ? "$_[0]" : ""; print STDOUT length($s), "\n", $s; }

sub uniq { my %seen = map { $_ => 1 } @_; return keys %seen; }
sub make_regexp_ungreedy {
    my ($re) = @_;
    my ($in_class, $escaped, $quantified, $out) = (0, 0, 0, "");
    for my $c (split //, $re) {
        if ($quantified) { $out .= "?" if $c ne "?"; $quantified = 0; }
        $out .= $c;
        if ($escaped) { $escaped = 0; next; }
        if ($c eq "\\") { $escaped = 1; next; }
        if ($c eq "[") { $in_class = 1; next; }
        if ($in_class) { $in_class = 0 if $c eq "]"; next; }
        $quantified = 1 if $c =~ /[*}+]/;
    }
    $out .= "?" if $quantified;
    return $out;
}
sub Q {
    local $_ = $_[0];
    if (/[^-_.+a-z0-9\/]/i) {
        s/'/'"'"'/g; $_ = "'$_'"; s/^''//; s/''$//; return $_;
    } elsif ($_ eq "") { return "''"; }
    return $_;
}
sub pQ { my $s = $_[0]; $s =~ s/[\\\"\$\@]/\\$&/g if defined $s; return $s; }

our ($job_obj, $unquote, $total_jobs);
$Global::max_jobs_running = shift @ARGV;
my $trim = shift @ARGV;

package CommandLine;
sub seq { return $_[0]{seq}; }
sub slot { return $_[0]{slot}; }
sub skip { $_[0]{skip} = 1; }

package Arg;
sub Q { return ::Q($_[0]); }
sub pQ { return ::pQ($_[0]); }
sub hash { require B; return B::hash(@_); }
sub total_jobs { return $main::total_jobs; }
sub skip { $main::job_obj->skip(); }
sub slot { return $main::job_obj->slot(); }
sub seq { return $main::job_obj->seq(); }
sub uq { $main::unquote = 1; }
sub yyyy_mm_dd_hh_mm_ss { POSIX::strftime("%Y-%m-%dT%H:%M:%S", localtime(time())) }
sub yyyy_mm_dd_hh_mm { POSIX::strftime("%Y-%m-%dT%H:%M", localtime(time())) }
sub yyyy_mm_dd { POSIX::strftime("%Y-%m-%d", localtime(time())) }
sub hh_mm_ss { POSIX::strftime("%H:%M:%S", localtime(time())) }
sub hh_mm { POSIX::strftime("%H:%M", localtime(time())) }
sub yyyymmddhhmmss { POSIX::strftime("%Y%m%d%H%M%S", localtime(time())) }
sub yyyymmddhhmm { POSIX::strftime("%Y%m%d%H%M", localtime(time())) }
sub yyyymmdd { POSIX::strftime("%Y%m%d", localtime(time())) }
sub hhmmss { POSIX::strftime("%H%M%S", localtime(time())) }
sub hhmm { POSIX::strftime("%H%M", localtime(time())) }
sub trimmed {
    my $s = $_[0];
    if ($trim eq "l" or $trim eq "lr") { $s =~ s/^\s+//; }
    if ($trim eq "r" or $trim eq "lr") { $s =~ s/\s+$//; }
    return $s;
}
our @compiled;
sub compile {
    my $n = main::rd_line();
    my @errors;
    for my $i (1 .. $n) {
        my $code = main::rd_str();
        my $sub = compile_one($code);
        if ($sub) { push @compiled, $sub; }
        else { push @compiled, undef; push @errors, "Cannot use $code: $@"; }
    }
    if (@errors) { print STDOUT "ERR\n"; main::wr_str(join("\n", @errors)); }
    else { print STDOUT "OK\n"; }
    STDOUT->flush();
}

package Job;
sub filter {
    my $n = main::rd_line();
    my $run = 1;
    for my $i (1 .. $n) {
        my $code = main::rd_str();
        $run &&= eval $code;
    }
    print STDOUT "OK\n", ($run ? 1 : 0), "\n";
    STDOUT->flush();
}

package main;
Arg::compile();
while (1) {
    my $kind = rd_line();
    if ($kind eq "F") { Job::filter(); next; }
    my $seq = rd_line(); my $slot = rd_line(); $total_jobs = rd_line();
    my $nargs = rd_line();
    my @orig;
    for my $i (1 .. $nargs) {
        my $present = rd_line();
        my $s = rd_str();
        push @orig, $present ? $s : "\0noarg";
    }
    my $nasks = rd_line();
    my @asks;
    for my $i (1 .. $nasks) { push @asks, [split / /, rd_line()]; }
    $job_obj = bless { seq => $seq, slot => $slot, skip => 0 }, 'CommandLine';
    local *Arg::arg = [undef, @orig];
    my @answers;
    my $ok = eval {
        for my $ask (@asks) {
            my ($argi, $expr) = @$ask;
            local $_ = Arg::trimmed($orig[$argi]);
            $unquote = 0;
            $Arg::compiled[$expr]->($job_obj);
            push @answers, [$unquote, $_];
        }
        1;
    };
    if (!$ok) { print STDOUT "ERR\n"; wr_str($@); STDOUT->flush(); next; }
    print STDOUT "OK\n";
    for my $a (@answers) { print STDOUT $a->[0] ? 1 : 0, "\n"; wr_str($a->[1]); }
    print STDOUT $job_obj->{skip} ? 1 : 0, "\n";
    STDOUT->flush();
}
"#;

/// A job's request: its inputs and the (input, expression) pairs wanted.
pub(crate) struct PerlJob<'a> {
    /// `$job->seq()`.
    pub(crate) seq: u64,
    /// `$job->slot()`.
    pub(crate) slot: usize,
    /// `total_jobs()`.
    pub(crate) total_jobs: u64,
    /// The job's inputs (`@arg`, from `$arg[1]`).
    pub(crate) args: &'a [Arg],
    /// What to evaluate.
    pub(crate) asks: &'a [(usize, ExprId)],
}

/// Perl's answer for a job.
pub(crate) struct PerlAnswer {
    /// One value per ask, in order.
    pub(crate) values: Vec<Evaluated>,
    /// Whether `skip()` was called.
    pub(crate) skip: bool,
}

/// The running interpreter.
#[derive(Debug)]
pub(crate) struct Perl {
    child: Child,
    to: BufWriter<ChildStdin>,
    from: BufReader<ChildStdout>,
}

impl Perl {
    /// Starts `perl` and compiles `codes`.
    ///
    /// # Errors
    /// `perl` is not installed, or an expression does not compile (the
    /// message is GNU parallel's `Cannot use CODE: ERROR`).
    pub(crate) fn start(codes: &[&str], trim: Trim, max_jobs: usize) -> anyhow::Result<Perl> {
        let mut child = Command::new("perl")
            .arg("-e")
            .arg(SCRIPT)
            .arg(max_jobs.to_string())
            .arg(trim.letters())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context(
                "cannot start perl, which Perl replacement strings ({= =}, --rpl, --plus, \
                 --filter) need; install perl",
            )?;
        let to = child.stdin.take().context("perl's stdin")?;
        let from = child.stdout.take().context("perl's stdout")?;
        let mut perl = Perl {
            child,
            to: BufWriter::new(to),
            from: BufReader::new(from),
        };
        let mut request = Vec::new();
        line(&mut request, codes.len());
        for code in codes {
            string(&mut request, code);
        }
        perl.send(&request)?;
        match perl.read_line()?.as_str() {
            "OK" => Ok(perl),
            "ERR" => bail!("{}", perl.read_string()?),
            other => bail!("perl answered {other:?}"),
        }
    }

    /// Evaluates a job's expressions.
    ///
    /// # Errors
    /// An expression died, or Perl is gone.
    pub(crate) fn evaluate(&mut self, job: &PerlJob<'_>) -> anyhow::Result<PerlAnswer> {
        let mut request = Vec::with_capacity(64);
        request.extend_from_slice(b"J\n");
        line(&mut request, job.seq);
        line(&mut request, job.slot);
        line(&mut request, job.total_jobs);
        line(&mut request, job.args.len());
        for arg in job.args {
            line(&mut request, usize::from(arg.is_some()));
            string(&mut request, arg.as_deref().unwrap_or(""));
        }
        line(&mut request, job.asks.len());
        for (arg, expr) in job.asks {
            request.extend_from_slice(format!("{arg} {expr}\n").as_bytes());
        }
        self.send(&request)?;
        match self.read_line()?.as_str() {
            "OK" => {}
            "ERR" => bail!(
                "a Perl replacement string failed: {}",
                self.read_string()?.trim_end()
            ),
            other => bail!("perl answered {other:?}"),
        }
        let mut values = Vec::with_capacity(job.asks.len());
        for _ in job.asks {
            let unquoted = self.read_line()? == "1";
            let text = self.read_string()?;
            values.push(Evaluated { text, unquoted });
        }
        let skip = self.read_line()? == "1";
        Ok(PerlAnswer { values, skip })
    }

    /// `--filter`: evaluates each code (placeholders already replaced) with
    /// Perl's `eval`; `true` when all are true.
    ///
    /// # Errors
    /// Perl is gone.
    pub(crate) fn filter(&mut self, codes: &[String]) -> anyhow::Result<bool> {
        let mut request = b"F\n".to_vec();
        line(&mut request, codes.len());
        for code in codes {
            string(&mut request, code);
        }
        self.send(&request)?;
        match self.read_line()?.as_str() {
            "OK" => Ok(self.read_line()? == "1"),
            other => bail!("perl answered {other:?}"),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.to
            .write_all(bytes)
            .and_then(|()| self.to.flush())
            .context("perl, which evaluates the Perl replacement strings, is gone")
    }

    fn read_line(&mut self) -> anyhow::Result<String> {
        let mut s = String::new();
        let n = self
            .from
            .read_line(&mut s)
            .context("cannot read from perl")?;
        if n == 0 {
            bail!("perl, which evaluates the Perl replacement strings, exited");
        }
        s.pop();
        Ok(s)
    }

    fn read_string(&mut self) -> anyhow::Result<String> {
        let len: usize = self
            .read_line()?
            .parse()
            .context("perl sent a bad length")?;
        let mut buf = vec![0; len];
        self.from
            .read_exact(&mut buf)
            .context("cannot read from perl")?;
        String::from_utf8(buf).context("a Perl replacement string made text that is not UTF-8")
    }
}

impl Drop for Perl {
    fn drop(&mut self) {
        // Closing its stdin ends the helper; reap it.
        let _ = self.to.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn line(buf: &mut Vec<u8>, n: impl std::fmt::Display) {
    buf.extend_from_slice(format!("{n}\n").as_bytes());
}

fn string(buf: &mut Vec<u8>, s: &str) {
    line(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perl_available() -> bool {
        Command::new("perl")
            .arg("-v")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    #[test]
    fn expressions_see_the_input_the_job_and_persist_state() {
        if !perl_available() {
            eprintln!("note: perl not installed; skipping");
            return;
        }
        let codes = [
            "$_ .= \"!\"",
            "$_ = ++$n",
            "$_ = $arg[2] . seq() . slot()",
            "skip() if $_ eq 'b'",
            "$_ = Q($_); uq()",
        ];
        let mut perl = Perl::start(&codes, Trim::None, 4).unwrap();
        let args: Vec<Arg> = vec![Some("a b".into()), Some("b".into())];
        let asks = [(0, 0), (0, 1), (1, 1), (0, 2), (1, 3), (0, 4)];
        let answer = perl
            .evaluate(&PerlJob {
                seq: 7,
                slot: 2,
                total_jobs: 9,
                args: &args,
                asks: &asks,
            })
            .unwrap();
        let texts: Vec<&str> = answer.values.iter().map(|v| v.text.as_str()).collect();
        assert_eq!(texts, vec!["a b!", "1", "2", "b72", "b", "'a b'"]);
        assert!(answer.values[5].unquoted && !answer.values[0].unquoted);
        assert!(answer.skip);
    }

    #[test]
    fn a_bad_expression_is_reported_like_gnu() {
        if !perl_available() {
            return;
        }
        let err = Perl::start(&["s/(/x/"], Trim::None, 1).unwrap_err();
        assert!(err.to_string().starts_with("Cannot use s/(/x/:"), "{err}");
    }
}
