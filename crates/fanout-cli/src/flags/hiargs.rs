//! The validated configuration a run needs, built from [`LowArgs`]: options
//! from the profile files, `$PARALLEL` and the command line (in that order,
//! later ones winning), every value checked, the inputs read and the
//! templates compiled.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use fanout::journal::SyncPolicy;
use regex::Regex;

use super::config;
use super::halt::Halt;
use super::lowargs::{self, LowArgs, ParseError, RawSource, SourceKind};
use crate::batch::Batching;
use crate::cpus::Cpus;
use crate::input::{Inputs, ReadRules, SourceDecl, SourceSpec};
use crate::job::BlockFile;
use crate::limits::Timeout;
use crate::pipe::{Cutting, GroupBy, Part, Reading, Separators};
use crate::shell::Shell;
use crate::template::{usable_line_length, Compiler, LengthModel, Parens, Rpls, Template, Trim};
use crate::termseq::TermSeq;

/// The GNU parallel version whose behaviour fanout follows.
pub(crate) const GNU_VERSION: u32 = 20221122;

/// `-j` with `--redis` when none is given: how many jobs are out on the
/// workers at once.
const REMOTE_JOBS: usize = 256;

/// `--joblog-sync group` syncs when this many records are unsynced.
const SYNC_GROUP_RECORDS: u32 = 64;

/// `--joblog-sync group` also syncs at the first record written this long
/// after the oldest unsynced one.
const SYNC_GROUP_INTERVAL: Duration = Duration::from_secs(1);

/// Which jobs a run skips because a previous run recorded them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Run everything; start a new joblog.
    Off,
    /// Skip every job the joblog records (`--resume`).
    All,
    /// Skip the jobs the joblog records as succeeded (`--resume-failed`).
    Failed,
}

/// How job output reaches fanout's stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputMode {
    /// Each job's output as one block when it ends (`--group`, default).
    Group,
    /// Complete lines as they come (`--line-buffer`).
    LineBuffer,
    /// Straight through, unprocessed (`--ungroup`).
    Ungroup,
}

/// The format of `--results NAME.csv|.tsv|.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableKind {
    /// Comma-separated.
    Csv,
    /// Tab-separated.
    Tsv,
    /// One JSON object per line.
    Json,
}

/// Where `--results` saves output.
#[derive(Debug, Clone)]
pub(crate) enum ResultsSpec {
    /// One table of all jobs (on stdout for `-.csv`, `-.tsv`, `-.json`).
    Table {
        /// The file, or `None` for stdout.
        path: Option<PathBuf>,
        /// Its format.
        kind: TableKind,
    },
    /// Files per job: under a directory tree named after the inputs (the
    /// name has no replacement string), in a directory the name makes (it
    /// ends in `/`), or in a file the name makes.
    Files {
        /// The name as given.
        name: String,
        /// The name as a template.
        template: Template,
    },
}

/// Everything a run needs, checked: a `HiArgs` never starts a job that a
/// later check would have refused.
#[derive(Debug)]
pub(crate) struct HiArgs {
    /// How many jobs run at once (at least 1).
    pub(crate) jobs: usize,
    /// Print output in input order.
    pub(crate) keep_order: bool,
    /// Grouped, line-buffered or ungrouped output.
    pub(crate) output: OutputMode,
    /// The `--tag`/`--tagstring` template.
    pub(crate) tag: Option<Template>,
    /// When to stop early; `None` is `never`.
    pub(crate) halt: Option<Halt>,
    /// Per-attempt time limit.
    pub(crate) timeout: Option<Timeout>,
    /// `--memfree`: bytes of free memory needed to start a job.
    pub(crate) memfree: Option<u64>,
    /// `--load`: start jobs only below this load.
    pub(crate) load: Option<f64>,
    /// Attempts per job in all (at least 1).
    pub(crate) attempts: u32,
    /// Print the commands only.
    pub(crate) dry_run: bool,
    /// Show a progress bar.
    pub(crate) bar: bool,
    /// Show the time left.
    pub(crate) eta: bool,
    /// The journal file.
    pub(crate) joblog: Option<PathBuf>,
    /// What the journal lets this run skip.
    pub(crate) resume: Resume,
    /// When journal records are synced to disk (`--joblog-sync`).
    pub(crate) joblog_sync: SyncPolicy,
    /// Where `--results` saves output.
    pub(crate) results: Option<ResultsSpec>,
    /// The command words as given, for the journal's fingerprint.
    pub(crate) command: Vec<String>,
    /// The compiled command.
    pub(crate) template: Template,
    /// The expressions of every template, and how they are computed.
    pub(crate) compiler: Compiler,
    /// `--trim`.
    pub(crate) trim: Trim,
    /// The inputs, read.
    pub(crate) inputs: Inputs,
    /// How records make jobs.
    pub(crate) batching: Batching,
    /// `-n 0`: inputs are read but not used.
    pub(crate) no_args: bool,
    /// GNU parallel's command-line length estimate.
    pub(crate) length: LengthModel,
    /// The command-line length limit.
    pub(crate) max_len: usize,
    /// `-v`: print each command before its output.
    pub(crate) print_commands: bool,
    /// `-t`: print each command on stderr when it starts.
    pub(crate) verbose_stderr: bool,
    /// `--delay`: time between job starts.
    pub(crate) delay: Option<Duration>,
    /// The variable holding the slot number minus one.
    pub(crate) slot_var: String,
    /// `--tmpdir`.
    pub(crate) tmpdir: Option<PathBuf>,
    /// How many jobs the run has, as GNU parallel counts them.
    pub(crate) total_jobs: u64,
    /// `--filter` templates.
    pub(crate) filters: Vec<Template>,
    /// The shell for commands that need one.
    pub(crate) shell: Shell,
    /// Column names by number (from `--header` and file names, else the
    /// numbers), for `--results`.
    pub(crate) header_names: Vec<String>,
    /// Whether `--header` was given.
    pub(crate) has_header: bool,
    /// `$PARALLEL_ENV`: shell code run before every command.
    pub(crate) parallel_env: Option<String>,
    /// `--term-seq`.
    pub(crate) term_seq: TermSeq,
    /// `--nice`.
    pub(crate) nice: Option<i32>,
    /// `--shell-quote`: how many times to quote each command, which then
    /// is printed instead of run.
    pub(crate) shell_quote: u32,
    /// `--files`: stdout saved in files whose names are printed.
    pub(crate) files: bool,
    /// `--progress`.
    pub(crate) progress: bool,
    /// `--pipe`, `--pipepart`: where the jobs' blocks come from.
    pub(crate) pipe: Option<PipeSetup>,
    /// `--cat`, `--fifo`.
    pub(crate) block_file: Option<BlockFile>,
    /// `--redis`: the jobs run on `fanout worker`s through this server.
    pub(crate) remote: Option<RemoteArgs>,
}

/// `--redis URL --secret-file FILE`.
#[derive(Debug)]
pub(crate) struct RemoteArgs {
    /// The Redis URL.
    pub(crate) url: String,
    /// The secret that signs every job.
    pub(crate) secret: fanout_redis::Secret,
}

/// Where `--pipe` and `--pipepart` blocks come from.
#[derive(Debug)]
pub(crate) enum PipeSetup {
    /// Standard input, cut as it is read.
    Stream {
        /// How it is cut.
        reading: Reading,
        /// `--round-robin`.
        round_robin: bool,
    },
    /// Parts of the `-a` files, one per job.
    Parts(Vec<Part>),
    /// `--tee`: all of standard input to every job, read in pieces of this
    /// size.
    Tee {
        /// Bytes read at a time.
        block: usize,
    },
}

/// What parsing the arguments asks `main` to do.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Run with this configuration.
    Run(Box<HiArgs>),
    /// Print this and exit with this code (help, version, CPU counts).
    Print(String, i32),
}

impl HiArgs {
    /// Parses and validates `argv` (without the program name), with the
    /// options of the profile files and `$PARALLEL` first, and reads the
    /// input sources.
    ///
    /// # Errors
    /// Any bad flag, value or input source; the message names the problem.
    pub(crate) fn parse(argv: Vec<OsString>) -> anyhow::Result<Parsed> {
        let cmd = lowargs::command();
        let infos = lowargs::option_infos(&cmd);
        let (argv_opts, argv_rest) = lowargs::options_and_rest(argv, &infos)?;
        let first = match lowargs::parse(cmd.clone(), argv_opts.clone()) {
            Ok(low) => low,
            Err(e) => return parse_error(e, &cmd),
        };
        let mut opts = Vec::new();
        let mut rest = Vec::new();
        if !first.plain {
            let words = |w: Vec<String>| w.into_iter().map(OsString::from).collect::<Vec<_>>();
            for chunk in [config::profile_words(&first.profile)?, config::env_words()?] {
                let (o, r) = lowargs::options_and_rest(words(chunk), &infos)?;
                opts.extend(o);
                rest.extend(r);
            }
        }
        opts.extend(argv_opts);
        rest.extend(argv_rest);
        let mut all = opts;
        if !rest.is_empty() {
            all.push("--".into());
            all.extend(rest);
        }
        let low = match lowargs::parse(cmd.clone(), all) {
            Ok(low) => low,
            Err(e) => return parse_error(e, &cmd),
        };
        if low.help {
            let mut cmd = cmd;
            return Ok(Parsed::Print(cmd.render_long_help().to_string(), 0));
        }
        for hook in ["PARALLEL_CPUINFO", "PARALLEL_LSCPU", "PARALLEL_CPUPREFIX"] {
            if std::env::var_os(hook).is_some_and(|v| !v.is_empty()) {
                bail!(
                    "${hook} is set: GNU parallel's test hook for counting CPUs is not supported by fanout; unset it"
                );
            }
        }
        if let Some(what) = &low.generate {
            return Ok(Parsed::Print(generate(what, cmd)?, 0));
        }
        if let Some(printed) = info(&low)? {
            return Ok(printed);
        }
        HiArgs::from_low(low).map(|c| Parsed::Run(Box::new(c)))
    }

    fn from_low(mut low: LowArgs) -> anyhow::Result<HiArgs> {
        if low.group_by.is_some() {
            if low.remove_rec_sep {
                bail!("--remove-rec-sep is not compatible with --groupby");
            }
            if low.recstart.is_some() {
                bail!("--recstart is not compatible with --groupby");
            }
            if low.recend.as_ref().is_some_and(|e| e != "\n") {
                bail!("--recend is not compatible with --groupby");
            }
            if low.pipe_part {
                bail!("--group-by with --pipepart is not supported by fanout; use --pipe (give the file on standard input)");
            }
            low.pipe = true;
        }
        let cpus = Cpus::detect();
        let ncpus = if low.use_sockets {
            cpus.sockets
        } else if low.use_cores {
            cpus.cores
        } else {
            cpus.threads
        };
        let jobs = match &low.jobs {
            Some(spec) => parse_jobs(spec, ncpus)?,
            // On workers: enough jobs out to keep 256 worker slots busy,
            // whatever this machine's CPUs.
            None if low.redis.is_some() => REMOTE_JOBS,
            None => ncpus,
        };
        for login in &low.sshlogin {
            if login.split(',').any(|l| l.trim() != ":") {
                bail!("GNU parallel's --sshlogin (-S) {login:?} is not supported by fanout: only ':' (this machine); to run jobs on other machines, start `fanout worker` there and use --redis (see docs/CLI.md)");
            }
        }
        let term_seq = match &low.term_seq {
            Some(spec) => TermSeq::parse(spec)?,
            None => TermSeq::default(),
        };
        let nice = low
            .nice
            .as_deref()
            .map(|n| {
                n.parse::<i32>()
                    .with_context(|| format!("bad --nice {n:?}: give a niceness from -20 to 19"))
            })
            .transpose()?;
        let halt = match &low.halt {
            Some(spec) => Halt::parse(spec)?,
            None => None,
        };
        let timeout = low.timeout.as_deref().map(parse_timeout).transpose()?;
        let memfree = low
            .memfree
            .as_deref()
            .map(|m| parse_size(m, "--memfree"))
            .transpose()?
            .map(|m| m.max(0) as u64);
        let attempts = match &low.retries {
            Some(n) => n
                .parse::<u32>()
                .with_context(|| {
                    format!("bad --retries {n:?}: give the number of attempts, such as 3")
                })?
                .max(1),
            None => 1,
        };
        let resume = match (low.resume, low.resume_failed) {
            (true, _) => Resume::All,
            (_, true) => Resume::Failed,
            _ => Resume::Off,
        };
        if resume != Resume::Off && low.joblog.is_none() {
            bail!("--resume and --resume-failed need --joblog FILE: the joblog records what already ran");
        }
        let joblog_sync = match &low.joblog_sync {
            Some(_) if low.joblog.is_none() => {
                bail!(
                    "--joblog-sync needs --joblog FILE: it says when the joblog is synced to disk"
                )
            }
            Some(spec) => parse_joblog_sync(spec)?,
            None => SyncPolicy::None,
        };
        let joblog = match low.joblog.as_deref() {
            None => None,
            Some("-") => bail!("--joblog - (the joblog on stdout) is not supported by fanout; give a file name"),
            Some(p) if p.starts_with('+') => bail!(
                "--joblog +FILE (append to FILE) is not supported by fanout; use --joblog FILE --resume"
            ),
            Some(p) => Some(PathBuf::from(p)),
        };
        let dry_run = low.dry_run;
        let output = output_mode(&low, dry_run)?;
        let keep_order = low.keep_order && !low.no_keep_order;
        if output == OutputMode::LineBuffer && keep_order && attempts > 1 {
            bail!("--line-buffer with -k and --retries is not supported by fanout: a failed attempt's lines would already be printed");
        }
        let shell = Shell::detect()?;
        let parallel_env = parallel_env()?;

        // Input sources, in GNU parallel's order: -a files, then the
        // separators' sources.
        let arg_sep = low.arg_sep.clone().unwrap_or_else(|| ":::".to_owned());
        let file_sep = low
            .arg_file_sep
            .clone()
            .unwrap_or_else(|| "::::".to_owned());
        let (mut command, sources) =
            lowargs::split_separators(low.command.clone(), &arg_sep, &file_sep);
        let streaming = (low.pipe || low.cat || low.fifo) && !low.pipe_part;
        let piping = streaming || low.pipe_part;
        let rules = read_rules(&low)?;
        let (decls, pipe) = if piping && low.tee && !low.pipe_part {
            let block = match &low.block {
                Some(b) => parse_size(b, "--block")?.clamp(1, 1 << 30) as usize,
                None => 1 << 20,
            };
            (
                source_decls(&low.arg_files, sources)?,
                Some(PipeSetup::Tee { block }),
            )
        } else if piping {
            let pipe = pipe_setup(&low, &sources, jobs)?;
            (Vec::new(), Some(pipe))
        } else {
            (source_decls(&low.arg_files, sources)?, None)
        };
        if streaming && !low.tee && (low.bar || low.eta || low.shuf || low.progress) {
            bail!("--pipe is incompatible with --eta/--bar/--shuf");
        }
        if streaming && halt.as_ref().is_some_and(Halt::is_percentage) {
            bail!("--pipe is incompatible with --halt ...%: the number of jobs is not known in advance");
        }
        if piping && resume != Resume::Off {
            bail!("--resume with --pipe or --pipepart is not supported by fanout");
        }
        if piping && low.print_commands > 1 {
            bail!("-vv with --pipe or --pipepart is not supported by fanout: it would show GNU parallel's internal wrapper commands");
        }
        let mut raw = Inputs::load(&decls, &rules)?;

        // --header: the first record of each source names its columns.
        let colsep_text = low
            .colsep
            .clone()
            .or_else(|| low.header.as_ref().map(|_| "\t".to_owned()));
        let mut header_names: Vec<String> = Vec::new();
        let mut tagstring = low.tagstring.clone();
        let mut results = low.results.clone();
        let mut filters = low.filter.clone();
        let parens = match &low.parens {
            Some(p) => Parens::parse(p)?,
            None => Parens::default(),
        };
        if let Some(header) = low.header.as_ref().filter(|_| !piping) {
            let split = compile_regex(colsep_text.as_deref().unwrap_or("\t"), "--colsep")?;
            if header != "0" {
                for source in &mut raw {
                    if source.records.is_empty() {
                        continue;
                    }
                    let line = source.records.remove(0);
                    let line = line.strip_suffix('\r').unwrap_or(&line).to_owned();
                    for name in perl_split(&split, &line) {
                        header_names.push(name);
                    }
                }
            }
            let mut rename = |names: &[(usize, String)]| -> anyhow::Result<()> {
                for (id, name) in names {
                    for text in command
                        .iter_mut()
                        .chain(tagstring.iter_mut())
                        .chain(results.iter_mut())
                        .chain(filters.iter_mut())
                    {
                        *text = rename_column(text, name, *id, &parens)?;
                    }
                }
                Ok(())
            };
            let from_header: Vec<(usize, String)> = header_names
                .iter()
                .enumerate()
                .map(|(i, n)| (i + 1, n.clone()))
                .collect();
            rename(&from_header)?;
            let files: Vec<(usize, String)> = raw
                .iter()
                .filter_map(|s| s.file.clone())
                .filter(|f| f != "-")
                .enumerate()
                .map(|(i, f)| (i + 1, f))
                .collect();
            rename(&files)?;
            for (id, file) in files {
                if header_names.len() < id {
                    header_names.resize(id, String::new());
                }
                header_names[id - 1] = file;
            }
        }
        let colsep = colsep_text
            .as_deref()
            .map(|c| compile_regex(c, "--colsep"))
            .transpose()?;
        let mut trim = if low.colsep.is_some() {
            Trim::Both
        } else {
            Trim::None
        };
        if let Some(t) = &low.trim {
            trim = Trim::parse(t)?;
        }
        let mut inputs = Inputs::combine(raw, &rules, low.link, colsep);
        if low.shuf {
            inputs.shuffle();
        }

        // Replacement strings.
        let mut rpls = Rpls::gnu(low.plus);
        if let Some(s) = &low.replace_str {
            rpls.rename("{}", s);
        }
        if let Some(s) = low.replace_old.as_deref().filter(|s| !s.is_empty()) {
            rpls.rename("{}", s);
        }
        let renames = [
            (&low.extension_replace, "{.}"),
            (&low.basename_replace, "{/}"),
            (&low.dirname_replace, "{//}"),
            (&low.seq_replace, "{#}"),
            (&low.slot_replace, "{%}"),
            (&low.basename_extension_replace, "{/.}"),
        ];
        for (new, old) in renames {
            if let Some(new) = new {
                rpls.rename(old, new);
            }
        }
        for spec in &low.rpl {
            rpls.define_spec(spec);
        }

        // Arguments per job.
        let lines = match (&low.lines, &low.max_lines) {
            (Some(n), _) => Some(parse_count(n, "-L")?),
            (None, Some(n)) if n.is_empty() || n == "-0" => Some(1),
            (None, Some(n)) => Some(parse_count(n, "--max-lines")?.max(1)),
            (None, None) => None,
        };
        let max_args = match (&low.max_replace_args, &low.max_args) {
            (Some(n), _) => Some(parse_count(n, "-N")?),
            (None, Some(n)) => Some(parse_count(n, "-n")?),
            (None, None) => lines,
        };
        let by_length = low.multiple || low.context || low.xargs;
        let context = low.context
            || ((low.lines.is_some() || low.max_lines.is_some() || low.max_replace_args.is_some())
                && !(low.xargs || low.multiple));
        let no_args = max_args == Some(0);
        let batching = match max_args {
            Some(n) if n > 0 && !by_length => Batching::Count(n),
            Some(n) if n > 0 => Batching::Length {
                max: Some(n),
                spread: !low.xargs,
            },
            _ if by_length && !no_args => Batching::Length {
                max: None,
                spread: !low.xargs,
            },
            _ => Batching::Count(1),
        };

        // Templates.
        let block_file = if low.cat {
            Some(BlockFile::Cat)
        } else if low.fifo {
            Some(BlockFile::Fifo)
        } else {
            None
        };
        let mut compiler = Compiler {
            rpls,
            parens: parens.clone(),
            exprs: Default::default(),
            context,
            unquoted: block_file.is_some(),
        };
        let append = !piping || block_file.is_some();
        let template = compiler.command(&command, append, low.quote, &|name| {
            shell.has_function(name)
        })?;
        let tag = match (&tagstring, low.tag) {
            (Some(t), _) => Some(compiler.text(&unquote_printf(t))?),
            (None, true) => Some(compiler.text(&format!("{}{}", parens.left, parens.right))?),
            (None, false) => None,
        };
        let results = results
            .map(|r| results_spec(&r, &mut compiler))
            .transpose()?;
        let filters = filters
            .iter()
            .map(|f| compiler.text(f))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut others: Vec<&Template> = tag.iter().collect();
        if let Some(ResultsSpec::Files { template, .. }) = &results {
            others.push(template);
        }
        let length = compiler.length_model(&template, &others);
        let mut max_len = usable_line_length();
        if let Some(s) = &low.max_chars {
            let s = parse_count(s, "-s")?;
            if s <= max_len {
                max_len = s;
            } else {
                eprintln!("fanout: Warning: value for option -s should be < {max_len}");
            }
        }

        let records = match &pipe {
            Some(PipeSetup::Tee { .. }) => inputs.record_count(),
            Some(PipeSetup::Parts(parts)) => parts.len() as u64,
            Some(PipeSetup::Stream {
                round_robin: true, ..
            }) => jobs as u64,
            Some(PipeSetup::Stream { .. }) => 0,
            None => inputs.record_count(),
        };
        let per_job = match batching {
            Batching::Count(n) => n as u64,
            Batching::Length { max, .. } => max.unwrap_or(1) as u64,
        };
        let total_jobs = match &low.total_jobs {
            Some(n) => parse_count(n, "--total-jobs")? as u64,
            None => records.div_ceil(per_job.max(1)),
        };
        let delay = low
            .delay
            .as_deref()
            .map(|d| parse_duration(d, "--delay"))
            .transpose()?
            .filter(|d| !d.is_zero());
        let tmpdir = low.tmpdir.as_deref().map(PathBuf::from);
        if let Some(dir) = &tmpdir {
            if !dir.is_dir() {
                bail!("--tmpdir {}: not a directory", dir.display());
            }
        }
        let print_commands = low.print_commands > 0 && !low.silent;
        let compressing =
            low.compress || low.compress_program.is_some() || low.decompress_program.is_some();
        if compressing && (low.files || matches!(results, Some(ResultsSpec::Files { .. }))) {
            bail!("--compress with --files or --results DIR is not supported by fanout: GNU parallel would leave compressed output files");
        }
        // --tee needs every job running at once: -j defaults to 0.
        let jobs = if low.tee && low.jobs.is_none() {
            0
        } else {
            jobs
        };
        // -j 0: as many jobs as there are, as far as file descriptors allow
        // (each running job holds about three).
        let jobs = if jobs == 0 {
            let fds = crate::spawn::raise_open_files_limit().saturating_sub(64) / 3;
            usize::try_from(total_jobs)
                .unwrap_or(usize::MAX)
                .clamp(1, fds.max(1))
        } else {
            jobs
        };
        if matches!(pipe, Some(PipeSetup::Tee { .. })) && (jobs as u64) < total_jobs {
            bail!("--tee requires --jobs to be higher. Try --jobs 0.");
        }
        let has_header = low.header.is_some();
        if !has_header {
            header_names = (1..=inputs.source_count()).map(|i| i.to_string()).collect();
        }
        Ok(HiArgs {
            jobs,
            keep_order,
            output,
            tag,
            halt,
            timeout,
            memfree,
            load: low
                .load
                .as_deref()
                .map(|l| crate::limits::parse_load(l, ncpus))
                .transpose()?,
            attempts,
            dry_run,
            bar: low.bar,
            eta: low.eta,
            joblog,
            resume,
            joblog_sync,
            results,
            command,
            template,
            compiler,
            trim,
            inputs,
            batching,
            no_args,
            length,
            max_len,
            print_commands,
            verbose_stderr: low.verbose,
            delay,
            slot_var: low
                .process_slot_var
                .clone()
                .unwrap_or_else(|| "PARALLEL_JOBSLOT0".to_owned()),
            tmpdir,
            total_jobs,
            filters,
            shell,
            header_names,
            has_header,
            parallel_env,
            term_seq,
            nice,
            shell_quote: u32::from(low.shell_quote),
            files: low.files,
            progress: low.progress,
            remote: remote_args(&low)?,
            pipe,
            block_file,
        })
    }
}

/// `--redis` and `--secret-file`, and the options a run on workers refuses
/// (each would silently mean something else there).
fn remote_args(low: &LowArgs) -> anyhow::Result<Option<RemoteArgs>> {
    let Some(url) = &low.redis else {
        if low.secret_file.is_some() {
            bail!("--secret-file is for --redis: give both, or neither");
        }
        return Ok(None);
    };
    let Some(path) = &low.secret_file else {
        bail!(
            "--redis needs --secret-file FILE: workers run only jobs signed with a shared secret \
             (create one with: head -c 32 /dev/urandom > FILE; chmod 600 FILE), see docs/CLI.md"
        );
    };
    let secret = crate::remote::read_secret(path)?;
    let refused: [(bool, &str); 12] = [
        (low.pipe || low.pipe_part, "--pipe and --pipepart"),
        (low.tee, "--tee"),
        (low.line_buffer, "--line-buffer"),
        (low.ungroup, "--ungroup (-u)"),
        (low.files, "--files"),
        (low.memfree.is_some(), "--memfree"),
        (low.load.is_some(), "--load"),
        (low.cat || low.fifo, "--cat and --fifo"),
        (low.nice.is_some(), "--nice"),
        (low.term_seq.is_some(), "--term-seq"),
        (
            low.timeout.as_deref().is_some_and(|t| t.ends_with('%')),
            "--timeout N%",
        ),
        (
            std::env::var_os("PARALLEL_ENV").is_some_and(|v| !v.is_empty()),
            "$PARALLEL_ENV",
        ),
    ];
    if let Some((_, what)) = refused.iter().find(|(given, _)| *given) {
        bail!(
            "{what} with --redis is not supported by fanout: jobs on workers get no standard \
             input, their output comes back when they end, and the worker's own settings \
             apply; run without --redis for it"
        );
    }
    Ok(Some(RemoteArgs {
        url: url.clone(),
        secret,
    }))
}

/// Reports a parse error (or prints help and version, which clap reports as
/// errors).
fn parse_error(e: ParseError, cmd: &clap::Command) -> anyhow::Result<Parsed> {
    match e {
        ParseError::Refused(msg) => bail!("{msg}"),
        ParseError::Clap(err) => match err.kind() {
            clap::error::ErrorKind::DisplayHelp => {
                let mut cmd = cmd.clone();
                Ok(Parsed::Print(cmd.render_long_help().to_string(), 0))
            }
            clap::error::ErrorKind::DisplayVersion => Ok(Parsed::Print(version_text(), 0)),
            _ => {
                // clap's first line names the problem; its tips suggest `--`
                // tricks that do not fit fanout's syntax.
                let text = err.render().to_string();
                let first = text.lines().next().unwrap_or("bad arguments");
                bail!("{}; see fanout --help", first.trim_start_matches("error: "))
            }
        },
    }
}

/// `--generate man|bash|zsh|fish|elvish|powershell`: the man page or a
/// completion script, made from the same option definitions as `--help`.
fn generate(what: &str, cmd: clap::Command) -> anyhow::Result<String> {
    let mut out = Vec::new();
    if what == "man" {
        clap_mangen::Man::new(cmd)
            .render(&mut out)
            .context("cannot render the man page")?;
    } else {
        let shell: clap_complete::Shell = what
            .parse()
            .map_err(|e| anyhow::anyhow!("bad --generate {what:?}: {e}"))?;
        let mut cmd = cmd;
        clap_complete::generate(shell, &mut cmd, "fanout", &mut out);
    }
    String::from_utf8(out).context("the generated text is not UTF-8")
}

fn version_text() -> String {
    format!(
        "fanout {}\nFollows the command-line conventions of GNU parallel {GNU_VERSION}.\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The options that print something and exit.
fn info(low: &LowArgs) -> anyhow::Result<Option<Parsed>> {
    if low.version {
        return Ok(Some(Parsed::Print(version_text(), 0)));
    }
    if let Some(v) = &low.min_version {
        let wanted: u64 = v
            .parse()
            .with_context(|| format!("bad --min-version {v:?}: give a version such as 20130722"))?;
        let code = if u64::from(GNU_VERSION) < wanted {
            255
        } else {
            0
        };
        return Ok(Some(Parsed::Print(format!("{GNU_VERSION}\n"), code)));
    }
    let cpus = || Cpus::detect();
    if low.number_of_sockets {
        return Ok(Some(Parsed::Print(format!("{}\n", cpus().sockets), 0)));
    }
    if low.number_of_cpus || low.number_of_cores {
        return Ok(Some(Parsed::Print(format!("{}\n", cpus().cores), 0)));
    }
    if low.number_of_threads {
        return Ok(Some(Parsed::Print(format!("{}\n", cpus().threads), 0)));
    }
    if low.max_line_length_allowed {
        return Ok(Some(Parsed::Print(
            format!("{}\n", usable_line_length() * 2 + 3000 + 1),
            0,
        )));
    }
    Ok(None)
}

fn output_mode(low: &LowArgs, dry_run: bool) -> anyhow::Result<OutputMode> {
    if low.group && low.ungroup {
        bail!("--group cannot be combined with --ungroup");
    }
    if low.group && low.line_buffer {
        bail!("--group cannot be combined with --line-buffer");
    }
    if low.ungroup && low.line_buffer {
        bail!("--ungroup cannot be combined with --line-buffer");
    }
    Ok(if dry_run {
        OutputMode::Group
    } else if low.line_buffer {
        OutputMode::LineBuffer
    } else if low.ungroup {
        OutputMode::Ungroup
    } else {
        OutputMode::Group
    })
}

/// `$PARALLEL_ENV` (env_parallel's variables and functions): its text, or
/// the contents of the file it names, with `\001` standing for newlines.
fn parallel_env() -> anyhow::Result<Option<String>> {
    let Some(value) = std::env::var_os("PARALLEL_ENV").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let value = value
        .into_string()
        .map_err(|_| anyhow::anyhow!("$PARALLEL_ENV is not valid UTF-8"))?;
    let text = if std::path::Path::new(&value).exists() {
        std::fs::read_to_string(&value)
            .with_context(|| format!("cannot read $PARALLEL_ENV file {value}"))?
    } else {
        value
    };
    Ok(Some(text.replace('\x01', "\n")))
}

/// `--pipe`/`--pipepart`: how blocks are cut, and for `--pipepart` the
/// parts of the files.
fn pipe_setup(low: &LowArgs, sources: &[RawSource], jobs: usize) -> anyhow::Result<PipeSetup> {
    let separators = separators(low)?;
    let records = match (&low.max_replace_args, &low.max_args) {
        (Some(n), _) => Some(parse_count(n, "-N")?),
        (None, Some(n)) => Some(parse_count(n, "-n")?),
        (None, None) => None,
    }
    .filter(|&n| n > 0);
    let lines = match (&low.lines, &low.max_lines) {
        (Some(n), _) => Some(parse_count(n, "-L")?.max(1)),
        (None, Some(n)) if n.is_empty() => Some(1),
        (None, Some(n)) => Some(parse_count(n, "--max-lines")?.max(1)),
        (None, None) => None,
    };
    let block_spec = low.block.clone().unwrap_or_else(|| "1M".to_owned());
    let block = parse_size(&block_spec, "--block")?;
    let header = match &low.header {
        None => None,
        Some(h) => {
            let pattern = if h == ":" {
                "(.*\\n)".to_owned()
            } else if !h.is_empty() && h.bytes().all(|b| b.is_ascii_digit()) {
                "(.*\\n)".repeat(h.parse().unwrap_or(0))
            } else {
                h.clone()
            };
            Some(
                regex::bytes::Regex::new(&format!("\\A(?:{pattern})")).with_context(|| {
                    format!("--header {h:?} is a regular expression fanout cannot use")
                })?,
            )
        }
    };
    if low.pipe_part {
        if low.round_robin {
            bail!("--round-robin with --pipepart is not supported by fanout");
        }
        let mut files: Vec<String> = low.arg_files.clone();
        for source in sources {
            match source.kind {
                SourceKind::Files => files.extend(source.words.iter().cloned()),
                SourceKind::Args => {
                    bail!("--pipepart with ::: arguments is not supported by fanout: give the files with -a or ::::")
                }
            }
        }
        if files.is_empty() {
            bail!("--pipepart needs the file to split: give it with -a FILE");
        }
        let mut opened = Vec::new();
        let mut total = 0u64;
        for name in &files {
            let file =
                std::fs::File::open(name).with_context(|| format!("File not found: {name}"))?;
            if !crate::pipe::is_seekable(&file) {
                bail!("--pipepart only works on seekable files, not streams/pipes: {name} is not a seekable file");
            }
            total += file.metadata()?.len();
            opened.push(file);
        }
        let block = if block < 0 {
            // GNU parallel: -N means N parts per job slot.
            1 + total / jobs.max(1) as u64 / block.unsigned_abs()
        } else if low.block.is_none() {
            1 + total / jobs.max(1) as u64 / 10
        } else {
            block as u64
        };
        let mut parts = Vec::new();
        for file in opened {
            let size = file.metadata()?.len();
            let mut skip = 0u64;
            if low.skip_first_line {
                use std::os::unix::fs::FileExt;
                let mut byte = [0u8];
                while file.read_at(&mut byte, skip)? == 1 {
                    skip += 1;
                    if byte[0] == b'\n' {
                        break;
                    }
                }
            }
            let header_len = match &header {
                Some(re) => {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0; 1 << 20];
                    let n = file.read_at(&mut buf, skip)?;
                    re.find(&buf[..n]).map_or(0, |m| m.end() as u64)
                }
                None => 0,
            };
            let positions =
                crate::pipe::part_positions(&file, size, block, skip + header_len, &separators)?;
            let file = std::sync::Arc::new(file);
            for pair in positions.windows(2) {
                let mut ranges = Vec::new();
                if header_len > 0 {
                    ranges.push((skip, header_len));
                }
                ranges.push((pair[0], pair[1] - pair[0]));
                parts.push(Part {
                    file: file.clone(),
                    ranges,
                });
            }
        }
        return Ok(PipeSetup::Parts(parts));
    }
    if !low.arg_files.is_empty() || !sources.is_empty() {
        bail!("--pipe with input sources (:::, ::::, -a) is not supported by fanout: the blocks come from standard input");
    }
    let block = if block > (1 << 31) - 1 {
        eprintln!("fanout: Warning: --blocksize >= 2G causes problems. Using 2G-1.");
        (1 << 31) - 1
    } else if block <= 0 {
        bail!("bad --block {block_spec:?}: give a positive size, such as 1M");
    } else {
        block as usize
    };
    let group_by = low
        .group_by
        .as_deref()
        .map(|spec| Box::new(GroupBy::new(spec, low.colsep.as_deref())));
    let separators = match &group_by {
        Some(g) => Separators::Fixed {
            end: Vec::new(),
            start: g.separator.clone(),
        },
        None => separators,
    };
    Ok(PipeSetup::Stream {
        reading: Reading {
            cutting: Cutting {
                block,
                separators,
                records,
                lines: if records.is_some() { None } else { lines },
                skip_blank: low.no_run_if_empty,
            },
            header,
            skip_first_line: low.skip_first_line,
            remove_rec_sep: low.remove_rec_sep || group_by.is_some(),
            group_by,
        },
        round_robin: low.round_robin,
    })
}

/// GNU parallel's `recstartrecend`: the separators, as fixed strings with
/// `\n`, `\t`, `\r`, `\0`, `\'`, `\"` and `\\` understood, or as
/// regular expressions with `--regexp`.
fn separators(low: &LowArgs) -> anyhow::Result<Separators> {
    let (start, end) = match (&low.recstart, &low.recend) {
        (Some(s), Some(e)) => (s.clone(), e.clone()),
        (Some(s), None) => (s.clone(), String::new()),
        (None, Some(e)) => (String::new(), e.clone()),
        (None, None) => (String::new(), "\n".to_owned()),
    };
    if low.regexp {
        let end = if end.is_empty() && low.recend.is_some() {
            "(?s:.)".to_owned()
        } else if low.recend.is_none() && low.recstart.is_none() {
            "\n".to_owned()
        } else {
            end
        };
        let compile = |p: String| {
            regex::bytes::Regex::new(&p).with_context(|| {
                format!("--recstart/--recend {p:?} is a regular expression fanout cannot use")
            })
        };
        return Ok(Separators::Regexp {
            boundary: compile(format!("(?m)\\A((?:{end}))(?:{start})"))?,
            start: compile(format!("(?m)\\A(?:{start})"))?,
            end_text: end,
            start_text: start,
        });
    }
    let unescape = |s: &str| -> Vec<u8> {
        let mut out = Vec::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' {
                let mapped = match chars.peek() {
                    Some('0') => Some('\0'),
                    Some('r') => Some('\r'),
                    Some('n') => Some('\n'),
                    Some('t') => Some('\t'),
                    Some(q @ ('\'' | '"' | '\\')) => Some(*q),
                    _ => None,
                };
                if let Some(m) = mapped {
                    chars.next();
                    let mut b = [0; 4];
                    out.extend_from_slice(m.encode_utf8(&mut b).as_bytes());
                    continue;
                }
            }
            let mut b = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
        out
    };
    let end = if low.recend.is_none() && low.recstart.is_none() {
        b"\n".to_vec()
    } else {
        unescape(&end)
    };
    Ok(Separators::Fixed {
        end,
        start: unescape(&start),
    })
}

/// A size with GNU parallel's unit suffixes (`k` = 1000, `K` = 1024, `m`,
/// `M`, `g`, `G`, …), possibly negative or fractional.
fn parse_size(spec: &str, flag: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("bad {flag} {spec:?}: give a size such as 1M, 100k or 4096");
    let (number, unit) =
        match spec.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+')) {
            Some(at) => spec.split_at(at),
            None => (spec, ""),
        };
    let n: f64 = number.parse().map_err(|_| bad())?;
    let factor: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "K" | "ki" | "Ki" => 1024.0,
        "m" => 1e6,
        "M" | "mi" | "Mi" => 1_048_576.0,
        "g" => 1e9,
        "G" | "gi" | "Gi" => 1_073_741_824.0,
        "t" => 1e12,
        "T" | "ti" | "Ti" => 1_099_511_627_776.0,
        _ => return Err(bad()),
    };
    let value = n * factor;
    if !value.is_finite() {
        return Err(bad());
    }
    Ok(value as i64)
}

/// The input sources in GNU parallel's order: `-a` files first, then the
/// sources after the separators.
fn source_decls(arg_files: &[String], sources: Vec<RawSource>) -> anyhow::Result<Vec<SourceDecl>> {
    let mut decls: Vec<SourceDecl> = arg_files
        .iter()
        .map(|path| SourceDecl {
            spec: SourceSpec::File(path.clone()),
            linked: false,
        })
        .collect();
    for source in sources {
        match source.kind {
            SourceKind::Args => decls.push(SourceDecl {
                spec: SourceSpec::Args(source.words),
                linked: source.linked,
            }),
            SourceKind::Files => {
                for file in source.words {
                    decls.push(SourceDecl {
                        spec: SourceSpec::File(file),
                        linked: source.linked,
                    });
                }
            }
        }
    }
    if decls.first().is_some_and(|d| d.linked) {
        // The first source has nothing to link to.
        decls[0].linked = false;
    }
    if decls.is_empty() {
        decls.push(SourceDecl {
            spec: SourceSpec::File("-".to_owned()),
            linked: false,
        });
    }
    Ok(decls)
}

fn read_rules(low: &LowArgs) -> anyhow::Result<ReadRules> {
    let mut delimiter = b"\n".to_vec();
    if low.null || low.max_lines.as_deref() == Some("-0") {
        delimiter = b"\0".to_vec();
    }
    if let Some(d) = &low.delimiter {
        delimiter = unquote_printf(d).into_bytes();
        if delimiter.is_empty() {
            bail!("bad -d {d:?}: the delimiter cannot be empty");
        }
    }
    let eof = low
        .eof_str
        .clone()
        .or_else(|| low.eof.clone())
        .filter(|e| !e.is_empty());
    Ok(ReadRules {
        delimiter,
        eof,
        skip_blank: low.no_run_if_empty,
        continuation: low.lines.is_some() || low.max_lines.is_some(),
        skip_first_line: low.skip_first_line,
    })
}

/// GNU parallel's `unquote_printf`: `\t`, `\n`, `\r`, `\NNN` (octal) and
/// `\N`.
pub(crate) fn unquote_printf(s: &str) -> String {
    let s = s
        .replace("\\t", "\t")
        .replace("\\n", "\n")
        .replace("\\r", "\r");
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            let digits: String = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .take(3)
                .collect();
            let n = if digits.len() == 3 { 3 } else { 1 };
            let octal: String = digits.chars().take(n).collect();
            // Perl's sprintf "\NNN": octal escapes; 8 and 9 end them.
            let value = octal
                .chars()
                .take_while(|c| c.is_digit(8))
                .fold(0u32, |v, c| v * 8 + c.to_digit(8).unwrap_or(0));
            let consumed = octal.chars().take_while(|c| c.is_digit(8)).count();
            if consumed == 0 {
                out.push(chars[i]);
                i += 1;
                continue;
            }
            out.push(char::from_u32(value % 256).unwrap_or('\0'));
            out.extend(octal.chars().skip(consumed));
            i += 1 + n;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// `--results NAME`.
fn results_spec(name: &str, compiler: &mut Compiler) -> anyhow::Result<ResultsSpec> {
    let lower = name.to_lowercase();
    let kind = if lower.ends_with(".csv") {
        Some(TableKind::Csv)
    } else if lower.ends_with(".tsv") {
        Some(TableKind::Tsv)
    } else if lower.ends_with(".json") {
        Some(TableKind::Json)
    } else {
        None
    };
    if let Some(kind) = kind {
        let path = match name {
            "-.csv" | "-.tsv" | "-.json" => None,
            _ => Some(PathBuf::from(name)),
        };
        return Ok(ResultsSpec::Table { path, kind });
    }
    Ok(ResultsSpec::Files {
        name: name.to_owned(),
        template: compiler.text(name)?,
    })
}

/// GNU parallel's header renaming: `{NAME}`, `{NAME.}`, `{NAME/}` …
/// become `{ID…}`, and `{=NAME perl =}` becomes `{=ID perl =}`. NAME is
/// used as a regular expression, as GNU parallel does.
fn rename_column(text: &str, name: &str, id: usize, parens: &Parens) -> anyhow::Result<String> {
    let pattern = |n: &str| format!(r"\{{{n}(|/|//|\.|/\.)\}}");
    let re = Regex::new(&pattern(name)).or_else(|_| Regex::new(&pattern(&regex::escape(name))))?;
    let text = re
        .replace_all(text, format!("{{{id}${{1}}}}").as_str())
        .into_owned();
    let perl = |n: &str| {
        format!(
            "(?x){}{}(.*?){}",
            regex::escape(&parens.left).replace(' ', "\\ "),
            n,
            regex::escape(&parens.right).replace(' ', "\\ ")
        )
    };
    let re = Regex::new(&perl(name)).or_else(|_| Regex::new(&perl(&regex::escape(name))))?;
    Ok(re
        .replace_all(
            &text,
            format!("{}{id}${{1}}{}", parens.left, parens.right).as_str(),
        )
        .into_owned())
}

/// Perl's `split /RE/, $line` (trailing empty fields dropped).
fn perl_split(re: &Regex, line: &str) -> Vec<String> {
    let mut fields: Vec<String> = crate::input::split_columns(line, re)
        .iter()
        .map(|v| v.to_string())
        .collect();
    while fields.last().is_some_and(String::is_empty) {
        fields.pop();
    }
    fields
}

fn compile_regex(re: &str, flag: &str) -> anyhow::Result<Regex> {
    Regex::new(re).with_context(|| {
        format!(
            "{flag} {re:?} is a regular expression fanout cannot use (look-around and \
             back-references are not supported)"
        )
    })
}

/// A count with GNU parallel's unit suffixes (`k` = 1000, `K` = 1024, …).
fn parse_count(spec: &str, flag: &str) -> anyhow::Result<usize> {
    let bad = || {
        anyhow::anyhow!(
            "bad {flag} {spec:?}: give a whole number, such as 3 (k, M, G suffixes allowed)"
        )
    };
    let (digits, unit) = match spec.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => spec.split_at(at),
        None => (spec, ""),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor: u64 = match unit {
        "" => 1,
        "k" => 1000,
        "K" | "ki" | "Ki" => 1024,
        "m" => 1_000_000,
        "M" | "mi" | "Mi" => 1 << 20,
        "g" => 1_000_000_000,
        "G" | "gi" | "Gi" => 1 << 30,
        _ => return Err(bad()),
    };
    usize::try_from(n.checked_mul(factor).ok_or_else(bad)?).map_err(|_| bad())
}

/// `-j`: `N`, `N%` of the CPUs, `+N` or `-N` relative to them, rounded up
/// as GNU parallel does.
fn parse_jobs(spec: &str, cpus: usize) -> anyhow::Result<usize> {
    let bad = || {
        anyhow::anyhow!("bad -j {spec:?}: give a positive number of jobs (8), a share of the CPUs (50%), or +N/-N CPUs")
    };
    let jobs = if let Some(pct) = spec.strip_suffix('%') {
        let pct: f64 = pct.parse().map_err(|_| bad())?;
        if pct < 0.0 || !pct.is_finite() {
            return Err(bad());
        }
        (cpus as f64 * pct / 100.0).ceil() as i64
    } else if let Some(n) = spec.strip_prefix('+') {
        cpus as i64 + n.parse::<i64>().map_err(|_| bad())?
    } else if let Some(n) = spec.strip_prefix('-') {
        cpus as i64 - n.parse::<i64>().map_err(|_| bad())?
    } else if spec.bytes().all(|b| b.is_ascii_digit()) && !spec.is_empty() {
        spec.parse::<i64>().map_err(|_| bad())?
    } else if std::path::Path::new(spec).is_file() {
        bail!("-j {spec:?} names a file: reading the number of jobs from a file is not supported by fanout");
    } else {
        return Err(bad());
    };
    if jobs == 0 && spec.bytes().all(|b| b.is_ascii_digit()) {
        // GNU parallel's "as many as possible": decided once the number of
        // jobs is known.
        return Ok(0);
    }
    if jobs <= 0 {
        bail!("bad -j {spec:?}: at least one job must run at a time");
    }
    Ok(jobs as usize)
}

/// `--joblog-sync`: `none`, `record` or `group` (every
/// [`SYNC_GROUP_RECORDS`] records, or at the first record
/// [`SYNC_GROUP_INTERVAL`] after the oldest unsynced one).
fn parse_joblog_sync(spec: &str) -> anyhow::Result<SyncPolicy> {
    match spec {
        "none" => Ok(SyncPolicy::None),
        "record" => Ok(SyncPolicy::EveryRecord),
        "group" => Ok(SyncPolicy::group(
            SYNC_GROUP_RECORDS,
            Some(SYNC_GROUP_INTERVAL),
        )),
        _ => bail!("bad --joblog-sync {spec:?}: give none, record or group"),
    }
}

/// `--timeout`: seconds, a duration with `s`, `m`, `h`, `d` parts, or
/// `N%` of the median run time of the jobs that succeeded.
fn parse_timeout(spec: &str) -> anyhow::Result<Timeout> {
    if let Some(pct) = spec.strip_suffix('%') {
        return match pct.parse::<f64>() {
            Ok(p) if p > 0.0 && p.is_finite() => Ok(Timeout::percent(p / 100.0)),
            _ => bail!("bad --timeout {spec:?}: give a percentage such as 200%"),
        };
    }
    parse_duration(spec, "--timeout").and_then(|d| {
        if d.is_zero() {
            bail!("bad --timeout {spec:?}: give a positive number of seconds, such as 30 or 0.5")
        }
        Ok(Timeout::Fixed(d))
    })
}

/// GNU parallel's `multiply_time_units`: `1.5`, `30s`, `2m`, `1h30m`, `1d`.
fn parse_duration(spec: &str, flag: &str) -> anyhow::Result<Duration> {
    let bad = || {
        anyhow::anyhow!(
            "bad {flag} {spec:?}: give seconds (such as 30 or 0.5) or a duration such as 1m30s"
        )
    };
    let mut total = 0.0;
    let mut number = String::new();
    let mut any_unit = false;
    for c in spec.chars() {
        let unit = match c.to_ascii_lowercase() {
            's' => Some(1.0),
            'm' => Some(60.0),
            'h' => Some(3600.0),
            'd' => Some(86400.0),
            _ => None,
        };
        match unit {
            Some(u) => {
                let n: f64 = number.parse().map_err(|_| bad())?;
                total += n * u;
                number.clear();
                any_unit = true;
            }
            None => number.push(c),
        }
    }
    if !number.is_empty() {
        if any_unit {
            return Err(bad());
        }
        total = number.parse().map_err(|_| bad())?;
    }
    if !total.is_finite() || total < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_accept_counts_percentages_and_offsets() {
        assert_eq!(parse_jobs("3", 4).unwrap(), 3);
        assert_eq!(parse_jobs("50%", 4).unwrap(), 2);
        assert_eq!(parse_jobs("70%", 2).unwrap(), 2);
        assert_eq!(parse_jobs("1%", 4).unwrap(), 1);
        assert_eq!(parse_jobs("+2", 4).unwrap(), 6);
        assert!(parse_jobs("-9", 4).is_err());
        assert_eq!(parse_jobs("0", 4).unwrap(), 0);
        assert!(parse_jobs("-4", 4)
            .unwrap_err()
            .to_string()
            .contains("at least one job"));
        assert!(parse_jobs("x", 4).is_err());
    }

    #[test]
    fn durations_take_gnus_units() {
        assert_eq!(
            parse_duration("1.5", "x").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration("1m30s", "x").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_duration("2h", "x").unwrap(),
            Duration::from_secs(7200)
        );
        assert!(parse_duration("x", "x").is_err());
    }

    #[test]
    fn unquote_printf_is_gnus() {
        assert_eq!(unquote_printf("a\\tb\\n"), "a\tb\n");
        assert_eq!(unquote_printf("\\0"), "\0");
        assert_eq!(unquote_printf("\\101"), "A");
        assert_eq!(unquote_printf("\\\\"), "\\\\");
        assert_eq!(unquote_printf("\\r\\n"), "\r\n");
    }

    #[test]
    fn counts_take_units() {
        assert_eq!(parse_count("3", "-n").unwrap(), 3);
        assert_eq!(parse_count("2k", "-n").unwrap(), 2000);
        assert_eq!(parse_count("1K", "-n").unwrap(), 1024);
        assert!(parse_count("x", "-n").is_err());
    }

    #[test]
    fn header_names_become_positions() {
        let p = Parens::default();
        assert_eq!(
            rename_column("echo {a} {a.} {ab}", "a", 2, &p).unwrap(),
            "echo {2} {2.} {ab}"
        );
        assert_eq!(
            rename_column("{=a s/x/y/ =}", "a", 1, &p).unwrap(),
            "{=1 s/x/y/ =}"
        );
    }
}
