//! `fanout timeline JOBLOG [-o FILE]`: a picture of a run from its joblog
//! (fanout's or GNU parallel's: the format is the same), as one
//! self-contained SVG (or HTML) file. Each job is a bar on the row of the
//! job slot it ran in, coloured by how it ended; the hover text says which
//! job it was; a strip at the bottom shows how many jobs ran at each
//! moment, and each row ends with how busy that slot was.
//!
//! A joblog does not record slots, so they are worked out again: jobs in
//! start order, each in the lowest-numbered slot free when it started.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;

/// `fanout timeline` arguments.
#[derive(Debug, Parser)]
#[command(
    name = "fanout timeline",
    about = "Draw a run's timeline from its joblog, as an SVG or HTML file.",
    disable_version_flag = true
)]
struct TimelineArgs {
    /// The joblog (--joblog FILE of fanout or GNU parallel).
    #[arg(value_name = "JOBLOG")]
    joblog: PathBuf,

    /// Where to write the picture [default: standard output]; a name ending
    /// in .html makes an HTML page, anything else SVG.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Write HTML (an SVG inside a page with a table of the failed jobs)
    /// whatever the file's name.
    #[arg(long = "html")]
    html: bool,
}

/// One job of the joblog.
#[derive(Debug, Clone)]
struct Job {
    seq: u64,
    start: f64,
    runtime: f64,
    exitval: i64,
    signal: i64,
    command: String,
}

impl Job {
    fn end(&self) -> f64 {
        self.start + self.runtime
    }

    fn outcome(&self) -> Outcome {
        match (self.exitval, self.signal) {
            (0, 0) => Outcome::Succeeded,
            (-2, _) => Outcome::Skipped,
            (-1, _) => Outcome::Killed,
            _ => Outcome::Failed,
        }
    }
}

/// How a job ended, as drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
    /// Killed by fanout or GNU parallel (timeout, halt): exit -1.
    Killed,
    /// `skip()` or `--filter`: exit -2.
    Skipped,
}

impl Outcome {
    fn class(self) -> &'static str {
        match self {
            Outcome::Succeeded => "ok",
            Outcome::Failed => "failed",
            Outcome::Killed => "killed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Runs `fanout timeline` with `argv` (after the word `timeline`); returns
/// the exit code.
pub(crate) fn main(argv: Vec<OsString>) -> i32 {
    let args = match TimelineArgs::try_parse_from(
        std::iter::once(OsString::from("fanout timeline")).chain(argv),
    ) {
        Ok(args) => args,
        Err(e) => {
            let kind = e.kind();
            let _ = e.print();
            if matches!(kind, clap::error::ErrorKind::DisplayHelp) {
                return 0;
            }
            eprintln!(
                "fanout: `fanout timeline` draws a joblog; to run a program named timeline, \
                 write `fanout -- timeline ...`"
            );
            return crate::run::TOOL_ERROR;
        }
    };
    match draw(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("fanout: {e:#}");
            crate::run::TOOL_ERROR
        }
    }
}

fn draw(args: &TimelineArgs) -> anyhow::Result<()> {
    let text = std::fs::read(&args.joblog)
        .with_context(|| format!("cannot read joblog {}", args.joblog.display()))?;
    let jobs = parse(&String::from_utf8_lossy(&text))
        .with_context(|| format!("{} is not a joblog", args.joblog.display()))?;
    let html = args.html
        || args
            .output
            .as_ref()
            .and_then(|p| p.extension())
            .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    let title = args
        .joblog
        .file_name()
        .map_or_else(|| "joblog".to_owned(), |n| n.to_string_lossy().into_owned());
    let svg = svg(&jobs, &title);
    let out = if html { page(&jobs, &title, &svg) } else { svg };
    match &args.output {
        Some(path) => {
            std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(out.as_bytes())
                .context("cannot write to stdout")
        }
    }
}

/// The jobs of a joblog: its header line and any torn last line are
/// skipped; any other line that is not a record is an error.
fn parse(text: &str) -> anyhow::Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, raw) in lines.iter().enumerate() {
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        if line.is_empty() || (i == 0 && line.starts_with("Seq\t")) {
            continue;
        }
        let f: Vec<&str> = line.splitn(9, '\t').collect();
        let job = (f.len() == 9)
            .then(|| {
                Some(Job {
                    seq: f[0].trim().parse().ok()?,
                    start: f[2].trim().parse().ok()?,
                    runtime: f[3].trim().parse().ok()?,
                    exitval: f[6].trim().parse().ok()?,
                    signal: f[7].trim().parse().ok()?,
                    command: f[8].replace('\0', "\n"),
                })
            })
            .flatten();
        match job {
            Some(job) if job.start.is_finite() && job.runtime.is_finite() && job.runtime >= 0.0 => {
                jobs.push(job);
            }
            // A torn last line (a run killed while writing it).
            _ if i + 1 == lines.len() && !raw.ends_with('\n') => {}
            _ => bail!("line {} is not a joblog record: {line:?}", i + 1),
        }
    }
    if jobs.is_empty() {
        bail!("it records no job");
    }
    jobs.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.seq.cmp(&b.seq)));
    Ok(jobs)
}

/// Each job's slot (0-based): the lowest one free when it started. Times
/// are in milliseconds in a joblog, so a job that starts within 1 ms of
/// another's end may take its slot.
fn slots(jobs: &[Job]) -> (Vec<usize>, usize) {
    let mut free_at: Vec<f64> = Vec::new();
    let mut slot_of = Vec::with_capacity(jobs.len());
    for job in jobs {
        let slot = match free_at.iter().position(|&end| end <= job.start + 0.001) {
            Some(s) => s,
            None => {
                free_at.push(0.0);
                free_at.len() - 1
            }
        };
        free_at[slot] = job.end();
        slot_of.push(slot);
    }
    let n = free_at.len();
    (slot_of, n)
}

/// A round step for about `target` ticks over `span` seconds.
fn tick_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(1e-3);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The picture.
fn svg(jobs: &[Job], title: &str) -> String {
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 70.0;
    const TOP: f64 = 56.0;
    const ROW: f64 = 18.0;
    const BAR: f64 = 12.0;
    const STRIP: f64 = 60.0;
    const WIDTH: f64 = 1200.0;
    let (slot_of, nslots) = slots(jobs);
    let t0 = jobs.iter().map(|j| j.start).fold(f64::INFINITY, f64::min);
    let t1 = jobs.iter().map(Job::end).fold(f64::NEG_INFINITY, f64::max);
    let span = (t1 - t0).max(0.001);
    let plot = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + (t - t0) / span * plot;
    let rows_bottom = TOP + nslots as f64 * ROW;
    let axis_y = rows_bottom + 6.0;
    let strip_top = axis_y + 30.0;
    let height = strip_top + STRIP + 30.0;

    let failed = jobs
        .iter()
        .filter(|j| matches!(j.outcome(), Outcome::Failed | Outcome::Killed))
        .count();
    let busy_total: f64 = jobs.iter().map(|j| j.runtime).sum();
    let busy_share = busy_total / (span * nslots as f64) * 100.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    s.push_str(
        "<style>.ok{fill:#4c9a2a}.failed{fill:#d1495b}.killed{fill:#7a0019}.skipped{fill:#aaaaaa}\
         .job:hover{stroke:#000;stroke-width:1}.grid{stroke:#ddd}.label{fill:#333}.busy{fill:#555}</style>\n",
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="38" class="label">{} jobs, {} failed, {:.3} s from first start to last end, {} slots busy {:.0}% of the time</text>"#,
        jobs.len(),
        failed,
        span,
        nslots,
        busy_share
    );
    // Time grid and axis.
    let step = tick_step(span, 10.0);
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let tx = x(t0 + t);
        let _ = writeln!(
            s,
            r#"<line class="grid" x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{rows_bottom:.1}"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle" class="label">{}</text>"#,
            axis_y + 12.0,
            format_seconds(t, step)
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="label">seconds</text>"#,
        WIDTH - RIGHT,
        axis_y + 24.0
    );
    // Rows: slot labels and how busy each slot was.
    let mut busy = vec![0.0; nslots];
    for (job, &slot) in jobs.iter().zip(&slot_of) {
        busy[slot] += job.runtime;
    }
    for (slot, b) in busy.iter().enumerate() {
        let y = TOP + slot as f64 * ROW + BAR - 1.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{y:.1}" text-anchor="end" class="label">slot {}</text><text x="{:.1}" y="{y:.1}" class="busy">{:.0}%</text>"#,
            LEFT - 6.0,
            slot + 1,
            WIDTH - RIGHT + 6.0,
            b / span * 100.0
        );
    }
    // The jobs; a bar is a pixel short, so that back-to-back jobs show.
    for (job, &slot) in jobs.iter().zip(&slot_of) {
        let bx = x(job.start);
        let full = job.runtime / span * plot;
        let width = if full > 3.0 {
            full - 1.0
        } else {
            full.max(1.0)
        };
        let y = TOP + slot as f64 * ROW;
        let _ = writeln!(
            s,
            r#"<rect class="job {}" x="{bx:.2}" y="{y:.1}" width="{width:.2}" height="{BAR}"><title>job {}: exit {}, signal {}, {:.3} s
{}</title></rect>"#,
            job.outcome().class(),
            job.seq,
            job.exitval,
            job.signal,
            job.runtime,
            escape(&job.command)
        );
    }
    // How many jobs ran at each moment: a step line. A job's end is cut at
    // the next start in its slot (joblog times are rounded to the
    // millisecond).
    let mut next_start = vec![f64::INFINITY; jobs.len()];
    let mut last_in_slot: Vec<Option<usize>> = vec![None; nslots];
    for (i, &slot) in slot_of.iter().enumerate() {
        if let Some(prev) = last_in_slot[slot] {
            next_start[prev] = jobs[i].start;
        }
        last_in_slot[slot] = Some(i);
    }
    let mut events: Vec<(f64, i64)> = jobs
        .iter()
        .zip(&next_start)
        .flat_map(|(j, &next)| [(j.start, 1), (j.end().min(next), -1)])
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let ymax = nslots.max(1) as f64;
    let y = |n: i64| strip_top + STRIP - n as f64 / ymax * STRIP;
    let mut path = format!("M{:.2},{:.2}", x(t0), y(0));
    let mut running = 0;
    for (t, delta) in events {
        path.push_str(&format!(" L{:.2},{:.2}", x(t), y(running)));
        running += delta;
        path.push_str(&format!(" L{:.2},{:.2}", x(t), y(running)));
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" class="label">running</text><line class="grid" x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/><path d="{path}" fill="none" stroke="#336699" stroke-width="1.2"/><text x="{:.1}" y="{:.1}" class="label">{}</text>"##,
        LEFT - 6.0,
        strip_top + STRIP / 2.0,
        strip_top + STRIP,
        WIDTH - RIGHT,
        strip_top + STRIP,
        WIDTH - RIGHT + 6.0,
        strip_top + 8.0,
        nslots
    );
    s.push_str("</svg>\n");
    s
}

fn format_seconds(t: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    format!("{t:.decimals$}")
}

/// An HTML page around the picture, with the failed jobs listed.
fn page(jobs: &[Job], title: &str, svg: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{0}</title>\
         <style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}</style></head><body>\n<h1>{0}</h1>\n",
        escape(title)
    );
    s.push_str(svg);
    let failed: Vec<&Job> = jobs
        .iter()
        .filter(|j| matches!(j.outcome(), Outcome::Failed | Outcome::Killed))
        .collect();
    if failed.is_empty() {
        s.push_str("<p>No job failed.</p>\n");
    } else {
        s.push_str("<h2>Failed jobs</h2>\n<table><tr><th>job</th><th>exit</th><th>signal</th><th>seconds</th><th>command</th></tr>\n");
        for j in failed {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td><code>{}</code></td></tr>",
                j.seq,
                j.exitval,
                j.signal,
                j.runtime,
                escape(&j.command)
            );
        }
        s.push_str("</table>\n");
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(seq: u64, start: f64, runtime: f64) -> Job {
        Job {
            seq,
            start,
            runtime,
            exitval: 0,
            signal: 0,
            command: format!("cmd {seq}"),
        }
    }

    #[test]
    fn slots_are_reused_lowest_first() {
        let jobs = vec![
            job(1, 0.0, 1.0),
            job(2, 0.0, 2.0),
            job(3, 1.0, 1.0),
            job(4, 2.0, 1.0),
        ];
        let (slots, n) = slots(&jobs);
        assert_eq!(slots, vec![0, 1, 0, 0]);
        assert_eq!(n, 2);
    }

    #[test]
    fn joblogs_parse_with_header_and_torn_tail() {
        let text = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n\
                    1\t:\t100.000\t     0.500\t0\t2\t0\t0\techo a\n\
                    2\t:\t100.100\t     0.200\t0\t0\t3\t0\tfalse\n\
                    3\t:\t100.2";
        let jobs = parse(text).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[1].outcome(), Outcome::Failed);
        assert!(parse("garbage\nmore\n").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn the_picture_has_a_bar_per_job_and_marks_failures() {
        let mut jobs = vec![job(1, 0.0, 1.0), job(2, 0.5, 1.0)];
        jobs[1].exitval = 1;
        let svg = svg(&jobs, "t & t");
        assert_eq!(svg.matches("<rect class=\"job").count(), 2);
        assert!(svg.contains("class=\"job failed\""));
        assert!(svg.contains("t &amp; t"));
        assert!(svg.contains("2 jobs, 1 failed"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(10.0, 10.0), 1.0);
        assert_eq!(tick_step(3.0, 10.0), 0.5);
        assert_eq!(tick_step(120.0, 10.0), 20.0);
    }
}
