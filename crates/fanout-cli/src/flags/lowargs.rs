//! Raw command-line arguments, as clap sees them, plus GNU parallel's input
//! separators, which clap cannot express and are split off by hand after.

use std::ffi::OsString;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

use super::gnu::{self, Arity, OptionInfo, REFUSED};

/// How `fanout` differs from GNU parallel; shown at the end of `--help`.
pub(crate) const DIFFERENCES: &str = "\
Differences from GNU parallel 20221122 (docs/CLI.md has the details):
  * --joblog FILE also writes FILE.fanout, a fingerprint of the command and
    inputs: --resume and --resume-failed refuse a joblog from another command
    or input list (or from GNU parallel) instead of skipping jobs by number,
    and ignore a torn last line. The line is written when a job completes, so
    a SIGKILL re-runs at most -j jobs. A run locks its joblog and kills what a
    SIGKILLed earlier run of it left behind. --retry-failed is refused.
  * Interrupted by SIGINT or SIGTERM, fanout exits with 128 + the signal; when
    its stdout is closed (fanout ... | head) it stops quietly with exit 0.
  * Perl expressions run in one perl process, once per job and input (GNU
    parallel sometimes evaluates them twice: visible only with side effects).
  * Inputs must be UTF-8. Remote execution, SQL, sem, tmux, --tty, colours,
    env_parallel, --embed and a few rarer options are refused by name.
  * `fanout timeline JOBLOG` draws a run; `fanout --generate man|bash|zsh|fish`
    prints the man page or completions.";

/// The options and command words, as parsed by clap.
#[derive(Debug, Parser, Default)]
#[command(
    name = "fanout",
    version,
    about = "Run a command for each input, in parallel, with a crash-safe journal.",
    override_usage = "fanout [OPTIONS] [COMMAND]... [::: ARGS... | :::: FILES... | :::+ ARGS... | ::::+ FILES...]...\n       \
                      fanout [OPTIONS] [COMMAND]... < INPUT_LINES",
    after_help = DIFFERENCES,
    disable_help_flag = true,
    disable_version_flag = true,
    args_override_self = true,
)]
pub(crate) struct LowArgs {
    /// Number of jobs run at once: N, N% of the CPUs, +N or -N CPUs
    /// [default: the number of CPUs].
    #[arg(short = 'j', long = "jobs", aliases = ["max-procs", "maxprocs"], short_alias = 'P',
          value_name = "N", allow_hyphen_values = true)]
    pub(crate) jobs: Option<String>,

    /// Print the output of the jobs in input order, byte-identical to running
    /// them one by one.
    #[arg(short = 'k', long = "keep-order", alias = "keeporder")]
    pub(crate) keep_order: bool,

    /// Cancel an earlier --keep-order (from a profile or $PARALLEL).
    #[arg(long = "no-keep-order", aliases = ["nokeeporder", "nok", "no-k"])]
    pub(crate) no_keep_order: bool,

    /// Group each job's output (the default).
    #[arg(long = "group")]
    pub(crate) group: bool,

    /// Print output as soon as it comes, ungrouped: lines of different jobs
    /// may mix.
    #[arg(short = 'u', long = "ungroup")]
    pub(crate) ungroup: bool,

    /// Print complete lines as soon as they arrive instead of grouping each
    /// job's output (lines of different jobs may alternate, never mix).
    #[arg(long = "line-buffer", aliases = ["line-buffered", "linebuffer", "linebuffered", "lb"])]
    pub(crate) line_buffer: bool,

    /// Prefix each output line with the job's inputs and a TAB.
    #[arg(long = "tag")]
    pub(crate) tag: bool,

    /// Prefix each output line with STR (replacement strings allowed) and a
    /// TAB.
    #[arg(
        long = "tag-string",
        alias = "tagstring",
        value_name = "STR",
        allow_hyphen_values = true
    )]
    pub(crate) tagstring: Option<String>,

    /// When to stop: never, or now|soon,fail|success|done=N|N% (also GNU's
    /// short forms 0, 1, 2, -1, -2, N%).
    #[arg(long = "halt-on-error", aliases = ["haltonerror", "halt"], value_name = "SPEC",
          allow_hyphen_values = true)]
    pub(crate) halt: Option<String>,

    /// Kill a job (its whole process group) that runs longer than SECS
    /// (suffixes s, m, h, d).
    #[arg(long = "timeout", value_name = "SECS", allow_hyphen_values = true)]
    pub(crate) timeout: Option<String>,

    /// Run a failing job up to N times in all [default: 1].
    #[arg(long = "retries", value_name = "N", allow_hyphen_values = true)]
    pub(crate) retries: Option<String>,

    /// Print the commands that would run, run nothing.
    #[arg(long = "dry-run", aliases = ["dryrun", "dr"])]
    pub(crate) dry_run: bool,

    /// Show a progress bar on stderr.
    #[arg(long = "bar")]
    pub(crate) bar: bool,

    /// Show the estimated time left on stderr.
    #[arg(long = "eta")]
    pub(crate) eta: bool,

    /// Record each finished job in FILE, GNU parallel's tab-separated format.
    #[arg(
        long = "joblog",
        alias = "jl",
        value_name = "FILE",
        allow_hyphen_values = true
    )]
    pub(crate) joblog: Option<String>,

    /// Skip the jobs the joblog records as run (needs --joblog).
    #[arg(long = "resume")]
    pub(crate) resume: bool,

    /// Skip the jobs the joblog records as succeeded; re-run failed ones
    /// (needs --joblog).
    #[arg(long = "resume-failed", alias = "resumefailed")]
    pub(crate) resume_failed: bool,

    /// When joblog records are forced to disk (fsync): none (a record
    /// survives a crash of fanout, not of the machine), record (each one
    /// survives a power loss), group (every 64 records, or at the first one
    /// a second after the oldest unsynced: a power loss loses at most 63)
    /// [default: none] (needs --joblog).
    #[arg(long = "joblog-sync", value_name = "none|record|group")]
    pub(crate) joblog_sync: Option<String>,

    /// Save each job's output: a directory tree (DIR), one file per job (a
    /// name with replacement strings), or one CSV, TSV or JSON file
    /// (NAME.csv, NAME.tsv, NAME.json; -.csv and the like for stdout).
    #[arg(long = "results", aliases = ["result", "res"], value_name = "NAME", allow_hyphen_values = true)]
    pub(crate) results: Option<String>,

    /// Read inputs from FILE (repeat for several input sources; - is stdin).
    #[arg(short = 'a', long = "arg-file", alias = "argfile", value_name = "FILE",
          action = ArgAction::Append, allow_hyphen_values = true)]
    pub(crate) arg_files: Vec<String>,

    /// Inputs are separated by NUL bytes instead of newlines.
    #[arg(short = '0', long = "null")]
    pub(crate) null: bool,

    /// Inputs are separated by DELIM (\n, \t, \r, \NNN octal understood).
    #[arg(
        short = 'd',
        long = "delimiter",
        value_name = "DELIM",
        allow_hyphen_values = true
    )]
    pub(crate) delimiter: Option<String>,

    /// Quote the command (and the inputs in it) as one shell word each.
    #[arg(short = 'q', long = "quote")]
    pub(crate) quote: bool,

    /// Use STR instead of {==} to enclose Perl expressions (first half opens,
    /// second half closes).
    #[arg(long = "parens", value_name = "STR", allow_hyphen_values = true)]
    pub(crate) parens: Option<String>,

    /// Define a replacement string: 'TAG PERL-EXPRESSION'.
    #[arg(long = "rpl", value_name = "'TAG PERL'", action = ArgAction::Append, allow_hyphen_values = true)]
    pub(crate) rpl: Vec<String>,

    /// Add GNU parallel's --plus replacement strings ({..}, {+.}, {%suf},
    /// {/a/b}, {##}, ...).
    #[arg(long = "plus")]
    pub(crate) plus: bool,

    /// Use STR instead of {}.
    #[arg(short = 'I', value_name = "STR", allow_hyphen_values = true)]
    pub(crate) replace_str: Option<String>,

    /// Deprecated spelling of -I; STR defaults to {}.
    #[arg(short = 'i', long = "replace", value_name = "STR", num_args = 0..=1,
          require_equals = true, default_missing_value = "")]
    pub(crate) replace_old: Option<String>,

    /// Use STR instead of {.}.
    #[arg(
        long = "extensionreplace",
        alias = "er",
        value_name = "STR",
        allow_hyphen_values = true
    )]
    pub(crate) extension_replace: Option<String>,

    /// Use STR instead of {/}.
    #[arg(
        long = "basenamereplace",
        alias = "bnr",
        value_name = "STR",
        allow_hyphen_values = true
    )]
    pub(crate) basename_replace: Option<String>,

    /// Use STR instead of {//}.
    #[arg(
        long = "dirnamereplace",
        alias = "dnr",
        value_name = "STR",
        allow_hyphen_values = true
    )]
    pub(crate) dirname_replace: Option<String>,

    /// Use STR instead of {/.}.
    #[arg(
        long = "basenameextensionreplace",
        alias = "bner",
        value_name = "STR",
        allow_hyphen_values = true
    )]
    pub(crate) basename_extension_replace: Option<String>,

    /// Use STR instead of {#}.
    #[arg(long = "seqreplace", value_name = "STR", allow_hyphen_values = true)]
    pub(crate) seq_replace: Option<String>,

    /// Use STR instead of {%}.
    #[arg(long = "slotreplace", value_name = "STR", allow_hyphen_values = true)]
    pub(crate) slot_replace: Option<String>,

    /// At most N inputs per job.
    #[arg(
        short = 'n',
        long = "max-args",
        alias = "maxargs",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub(crate) max_args: Option<String>,

    /// N inputs per job, with context replace.
    #[arg(
        short = 'N',
        long = "max-replace-args",
        alias = "maxreplaceargs",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub(crate) max_replace_args: Option<String>,

    /// N input lines per job (a line ending in white space continues).
    #[arg(short = 'L', value_name = "N", allow_hyphen_values = true)]
    pub(crate) lines: Option<String>,

    /// Like -L, N defaulting to 1.
    #[arg(short = 'l', long = "max-lines", alias = "maxlines", value_name = "N", num_args = 0..=1,
          require_equals = true, default_missing_value = "")]
    pub(crate) max_lines: Option<String>,

    /// As many inputs per job as the command-line length allows (no
    /// spreading over the job slots).
    #[arg(long = "xargs")]
    pub(crate) xargs: bool,

    /// As many inputs per job as the command-line length allows, spread over
    /// the job slots.
    #[arg(short = 'm')]
    pub(crate) multiple: bool,

    /// Like -m, with context replace.
    #[arg(short = 'X')]
    pub(crate) context: bool,

    /// Limit the command line to N bytes.
    #[arg(
        short = 's',
        long = "max-chars",
        alias = "maxchars",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub(crate) max_chars: Option<String>,

    /// Split each input into columns at REGEX ({1}, {2}, ... are columns).
    #[arg(
        short = 'C',
        long = "colsep",
        alias = "col-sep",
        value_name = "REGEX",
        allow_hyphen_values = true
    )]
    pub(crate) colsep: Option<String>,

    /// The first input line is a header: {name} means that column.
    #[arg(long = "header", value_name = "REGEX", allow_hyphen_values = true)]
    pub(crate) header: Option<String>,

    /// Trim white space from inputs: n, l, r, lr or rl.
    #[arg(long = "trim", value_name = "n|l|r|lr|rl")]
    pub(crate) trim: Option<String>,

    /// Pair the input sources element by element (shorter ones start over)
    /// instead of combining them.
    #[arg(long = "link", alias = "xapply")]
    pub(crate) link: bool,

    /// Use STR instead of ::: as the separator.
    #[arg(
        long = "arg-sep",
        alias = "argsep",
        value_name = "STR",
        allow_hyphen_values = true
    )]
    pub(crate) arg_sep: Option<String>,

    /// Use STR instead of :::: as the separator.
    #[arg(
        long = "arg-file-sep",
        alias = "argfilesep",
        value_name = "STR",
        allow_hyphen_values = true
    )]
    pub(crate) arg_file_sep: Option<String>,

    /// An input equal to STR ends its source.
    #[arg(short = 'E', value_name = "STR", allow_hyphen_values = true)]
    pub(crate) eof_str: Option<String>,

    /// Like -E; STR defaults to empty (no end-of-file string).
    #[arg(short = 'e', long = "eof", value_name = "STR", num_args = 0..=1,
          require_equals = true, default_missing_value = "")]
    pub(crate) eof: Option<String>,

    /// Skip inputs that are empty or white space only.
    #[arg(short = 'r', long = "no-run-if-empty", alias = "norunifempty")]
    pub(crate) no_run_if_empty: bool,

    /// Print each command on stderr before it runs.
    #[arg(short = 't', long = "verbose")]
    pub(crate) verbose: bool,

    /// Print each command on stdout, before its output.
    #[arg(short = 'v', action = ArgAction::Count)]
    pub(crate) print_commands: u8,

    /// Cancel -v.
    #[arg(long = "silent")]
    pub(crate) silent: bool,

    /// Wait DURATION between job starts (suffixes s, m, h, d).
    #[arg(long = "delay", value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) delay: Option<String>,

    /// Run the jobs in a random order.
    #[arg(long = "shuf")]
    pub(crate) shuf: bool,

    /// Do not use the first input line.
    #[arg(long = "skip-first-line", alias = "skipfirstline")]
    pub(crate) skip_first_line: bool,

    /// Give each job its slot number minus one in the variable NAME.
    #[arg(
        long = "process-slot-var",
        alias = "processslotvar",
        value_name = "NAME"
    )]
    pub(crate) process_slot_var: Option<String>,

    /// Accepted for GNU parallel compatibility (fanout prints no citation
    /// notice).
    #[arg(long = "will-cite", aliases = ["willcite", "nn", "nonotice", "no-notice"], hide = true)]
    pub(crate) will_cite: bool,

    /// Accepted for GNU parallel compatibility.
    #[arg(long = "gnu", hide = true)]
    pub(crate) gnu: bool,

    /// Ignore the profile files and $PARALLEL.
    #[arg(long = "plain")]
    pub(crate) plain: bool,

    /// Read options from the profile NAME (in ~/.parallel, or a path).
    #[arg(short = 'J', long = "profile", value_name = "NAME", action = ArgAction::Append)]
    pub(crate) profile: Vec<String>,

    /// Directory for temporary files (also $TMPDIR for the jobs).
    #[arg(long = "tmpdir", alias = "tempdir", value_name = "DIR")]
    pub(crate) tmpdir: Option<String>,

    /// The number of jobs, for {##}, --bar and --eta.
    #[arg(long = "total-jobs", aliases = ["totaljobs", "total"], value_name = "N", allow_hyphen_values = true)]
    pub(crate) total_jobs: Option<String>,

    /// Run a job only if the Perl expression EXPR (replacement strings
    /// allowed) is true.
    #[arg(long = "filter", value_name = "EXPR", action = ArgAction::Append, allow_hyphen_values = true)]
    pub(crate) filter: Vec<String>,

    /// Print the GNU parallel version fanout follows (20221122); exit 255 if
    /// it is older than VERSION.
    #[arg(
        long = "min-version",
        alias = "minversion",
        value_name = "VERSION",
        allow_hyphen_values = true
    )]
    pub(crate) min_version: Option<String>,

    /// Print the number of physical CPU cores and exit.
    #[arg(long = "number-of-cores", alias = "numberofcores")]
    pub(crate) number_of_cores: bool,

    /// Print the number of physical CPU cores and exit (GNU parallel's
    /// obsolete spelling).
    #[arg(long = "number-of-cpus", alias = "numberofcpus", hide = true)]
    pub(crate) number_of_cpus: bool,

    /// Print the number of CPU threads and exit.
    #[arg(long = "number-of-threads", alias = "numberofthreads")]
    pub(crate) number_of_threads: bool,

    /// Print the number of CPU sockets and exit.
    #[arg(long = "number-of-sockets", alias = "numberofsockets")]
    pub(crate) number_of_sockets: bool,

    /// Print the longest command line GNU parallel would allow and exit.
    #[arg(long = "max-line-length-allowed", alias = "maxlinelengthallowed")]
    pub(crate) max_line_length_allowed: bool,

    /// Count CPU sockets instead of hardware threads for -j.
    #[arg(
        long = "use-sockets-instead-of-threads",
        alias = "usesocketsinsteadofthreads"
    )]
    pub(crate) use_sockets: bool,

    /// Count physical cores instead of hardware threads for -j.
    #[arg(
        long = "use-cores-instead-of-threads",
        alias = "usecoresinsteadofthreads"
    )]
    pub(crate) use_cores: bool,

    /// Accepted for GNU parallel compatibility (it changes only how remote
    /// machines are counted).
    #[arg(
        long = "use-cpus-instead-of-cores",
        alias = "usecpusinsteadofcores",
        hide = true
    )]
    pub(crate) use_cpus: bool,

    /// Print each command quoted for the shell instead of running it (twice
    /// quotes twice).
    #[arg(long = "shell-quote", aliases = ["shellquote", "shell_quote"], action = ArgAction::Count)]
    pub(crate) shell_quote: u8,

    /// Run the jobs with niceness N.
    #[arg(long = "nice", value_name = "N", allow_hyphen_values = true)]
    pub(crate) nice: Option<String>,

    /// How a job is stopped: SIGNAL,MS,SIGNAL,MS,... [default:
    /// TERM,200,TERM,100,TERM,50,KILL,25].
    #[arg(long = "term-seq", alias = "termseq", value_name = "SEQ")]
    pub(crate) term_seq: Option<String>,

    /// Save each job's stdout in a file in the temporary directory and print
    /// the file's name instead.
    #[arg(long = "files", aliases = ["output-as-files", "outputasfiles"])]
    pub(crate) files: bool,

    /// Accepted for GNU parallel compatibility: fanout does not compress its
    /// temporary files (refused with --files or --results DIR, where GNU
    /// parallel's output files would be compressed).
    #[arg(long = "compress", hide = true)]
    pub(crate) compress: bool,

    /// See --compress.
    #[arg(long = "compress-program", aliases = ["use-compress-program", "usecompressprogram", "compressprogram"],
          value_name = "PRG", hide = true)]
    pub(crate) compress_program: Option<String>,

    /// See --compress.
    #[arg(long = "decompress-program", aliases = ["use-decompress-program", "usedecompressprogram", "decompressprogram"],
          value_name = "PRG", hide = true)]
    pub(crate) decompress_program: Option<String>,

    /// Only ':' (this machine) is accepted: for other machines use --redis
    /// and `fanout worker` there.
    #[arg(short = 'S', long = "sshlogin", value_name = "LOGIN", action = ArgAction::Append)]
    pub(crate) sshlogin: Vec<String>,

    /// Run the jobs on `fanout worker` processes through this Redis server
    /// (redis://HOST:PORT or rediss:// for TLS), instead of on this machine;
    /// -j is then how many jobs are out at once over every worker (default
    /// 256) (needs --secret-file).
    #[arg(long = "redis", value_name = "URL")]
    pub(crate) redis: Option<String>,

    /// With --redis: the file holding the secret (at least 16 bytes) that
    /// signs every job; workers run only jobs signed with their own.
    #[arg(long = "secret-file", value_name = "FILE")]
    pub(crate) secret_file: Option<std::path::PathBuf>,

    /// Show progress on stderr.
    #[arg(long = "progress")]
    pub(crate) progress: bool,

    /// Start a job only when this much memory is free (and kill the
    /// youngest job when less than half of it is).
    #[arg(long = "memfree", value_name = "SIZE")]
    pub(crate) memfree: Option<String>,

    /// Start a job only when fewer than MAX threads are running or waiting
    /// for the disk (N, N% of the CPUs, +N, -N).
    #[arg(long = "load", value_name = "MAX", allow_hyphen_values = true)]
    pub(crate) load: Option<String>,

    /// Split standard input into blocks of records, each given to a job on
    /// its standard input.
    #[arg(long = "pipe", alias = "spreadstdin")]
    pub(crate) pipe: bool,

    /// Like --pipe, on the files of -a (read by seeking, much faster).
    #[arg(long = "pipe-part", alias = "pipepart")]
    pub(crate) pipe_part: bool,

    /// Size of a --pipe block [default: 1M]; with --pipepart, -N means N
    /// blocks per job slot.
    #[arg(long = "block-size", aliases = ["blocksize", "block"], value_name = "SIZE", allow_hyphen_values = true)]
    pub(crate) block: Option<String>,

    /// Records start with STR (--pipe).
    #[arg(long = "recstart", value_name = "STR", allow_hyphen_values = true)]
    pub(crate) recstart: Option<String>,

    /// Records end with STR [default: \n] (--pipe).
    #[arg(long = "recend", value_name = "STR", allow_hyphen_values = true)]
    pub(crate) recend: Option<String>,

    /// --recstart and --recend are regular expressions.
    #[arg(long = "regexp", alias = "regex")]
    pub(crate) regexp: bool,

    /// Remove the record separators from the blocks.
    #[arg(long = "remove-rec-sep", aliases = ["removerecsep", "rrs"])]
    pub(crate) remove_rec_sep: bool,

    /// --pipe: keep records whose column COL (a number from 1, or a name
    /// from the header line), optionally changed by a Perl expression, has
    /// the same value in one block; implies --pipe.
    #[arg(
        long = "group-by",
        alias = "groupby",
        value_name = "COL [PERL]",
        allow_hyphen_values = true
    )]
    pub(crate) group_by: Option<String>,

    /// Give blocks to -j long-running jobs in turn instead of a job per
    /// block.
    #[arg(long = "round-robin", aliases = ["roundrobin", "round"])]
    pub(crate) round_robin: bool,

    /// Give all of standard input to every job (the jobs' arguments come
    /// from :::, :::: or -a as usual).
    #[arg(long = "tee")]
    pub(crate) tee: bool,

    /// Write each block to a file; {} is its name.
    #[arg(long = "cat")]
    pub(crate) cat: bool,

    /// Write each block through a named pipe; {} is its name.
    #[arg(long = "fifo")]
    pub(crate) fifo: bool,

    /// Print fanout's man page (man) or its completions for a shell (bash,
    /// zsh, fish, elvish, powershell) and exit.
    #[arg(long = "generate", value_name = "WHAT", value_parser = ["man", "bash", "zsh", "fish", "elvish", "powershell"])]
    pub(crate) generate: Option<String>,

    /// Print help.
    #[arg(short = 'h', long = "help")]
    pub(crate) help: bool,

    /// Print the version.
    #[arg(short = 'V', long = "version")]
    pub(crate) version: bool,

    /// The command and its arguments; the input replaces {} (appended when
    /// the command has no replacement string).
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub(crate) command: Vec<String>,
}

/// clap's command for [`LowArgs`] with GNU parallel's other options added,
/// hidden, so that they are recognised and refused by name.
pub(crate) fn command() -> clap::Command {
    let mut cmd = LowArgs::command();
    for (i, refused) in REFUSED.iter().enumerate() {
        let id = format!("refused-{i}");
        let mut arg = clap::Arg::new(id).hide(true);
        let (first, rest) = refused.long.split_first().expect("a name");
        if first.len() == 1 {
            let c = first.chars().next().expect("one char");
            arg = arg.short(c);
        } else {
            arg = arg.long(*first);
        }
        for alias in rest {
            arg = arg.alias(*alias);
        }
        if let Some(s) = refused.short {
            arg = arg.short(s);
        }
        arg = match refused.arity {
            Arity::Flag => arg.action(ArgAction::Count),
            _ => arg
                .action(ArgAction::Append)
                .num_args(1)
                .allow_hyphen_values(true),
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// Every option's names and arity, for the `Getopt::Long`-style pre-scan.
pub(crate) fn option_infos(cmd: &clap::Command) -> Vec<OptionInfo> {
    let mut infos = Vec::new();
    for arg in cmd.get_arguments() {
        if arg.is_positional() {
            continue;
        }
        let mut long: Vec<String> = Vec::new();
        if let Some(l) = arg.get_long() {
            long.push(l.to_owned());
        }
        if let Some(aliases) = arg.get_all_aliases() {
            long.extend(aliases.into_iter().map(str::to_owned));
        }
        let short = arg.get_short();
        if long.is_empty() {
            // Single-letter GNU options (-X, -m, -L, -E, -I) are short only.
            if short.is_none() {
                continue;
            }
        }
        let optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
        let arity = if !arg.get_action().takes_values() {
            Arity::Flag
        } else if optional && long.first().is_some_and(|l| l == "max-lines") {
            Arity::OptionalNumber
        } else if optional {
            Arity::OptionalString
        } else {
            Arity::Value
        };
        infos.push(OptionInfo { long, short, arity });
        if let Some(shorts) = arg.get_all_short_aliases() {
            for s in shorts {
                infos.push(OptionInfo {
                    long: Vec::new(),
                    short: Some(s),
                    arity,
                });
            }
        }
    }
    infos
}

/// Parses a complete, normalized argv (without the program name).
///
/// # Errors
/// clap's error, or the name of a GNU parallel option fanout refuses.
pub(crate) fn parse(cmd: clap::Command, argv: Vec<OsString>) -> Result<LowArgs, ParseError> {
    let matches = cmd
        .try_get_matches_from(std::iter::once(OsString::from("fanout")).chain(argv))
        .map_err(ParseError::Clap)?;
    for (i, refused) in REFUSED.iter().enumerate() {
        let id = format!("refused-{i}");
        if matches.contains_id(&id)
            && matches.value_source(&id) == Some(clap::parser::ValueSource::CommandLine)
        {
            let name = refused.long[0];
            let spelled = if name.len() == 1 {
                format!("-{name}")
            } else {
                format!("--{name}")
            };
            let short = refused
                .short
                .map(|c| format!(" (-{c})"))
                .unwrap_or_default();
            return Err(ParseError::Refused(format!(
                "GNU parallel's {spelled}{short} is not supported by fanout: {}",
                refused.why
            )));
        }
    }
    LowArgs::from_arg_matches(&matches).map_err(ParseError::Clap)
}

/// Why parsing failed.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// clap's error (also help and version, which are not errors).
    Clap(clap::Error),
    /// A GNU parallel option fanout does not implement.
    Refused(String),
}

/// The kind of an input source given after a separator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// `:::`: the words themselves are the inputs.
    Args,
    /// `::::`: each word names a file whose records are the inputs.
    Files,
}

/// One input source as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawSource {
    /// Whether the words are inputs or file names.
    pub(crate) kind: SourceKind,
    /// Whether it was introduced by `:::+`/`::::+` (paired with the previous
    /// source instead of multiplied with it).
    pub(crate) linked: bool,
    /// The words after the separator, up to the next separator.
    pub(crate) words: Vec<String>,
}

/// Splits the command words at the input separators (`arg_sep`, default
/// `:::`, and `file_sep`, default `::::`, each optionally followed by `+`):
/// what comes before is the command, the rest input sources. As in GNU
/// parallel, a first separator that is the last word is dropped.
pub(crate) fn split_separators(
    words: Vec<String>,
    arg_sep: &str,
    file_sep: &str,
) -> (Vec<String>, Vec<RawSource>) {
    let kind_of = |w: &str| -> Option<(SourceKind, bool)> {
        if w == arg_sep {
            Some((SourceKind::Args, false))
        } else if w == file_sep {
            Some((SourceKind::Files, false))
        } else if w.strip_suffix('+') == Some(arg_sep) {
            Some((SourceKind::Args, true))
        } else if w.strip_suffix('+') == Some(file_sep) {
            Some((SourceKind::Files, true))
        } else {
            None
        }
    };
    let mut head = Vec::new();
    let mut sources: Vec<RawSource> = Vec::new();
    let n = words.len();
    for (i, word) in words.into_iter().enumerate() {
        let sep = kind_of(&word);
        if sep.is_some() && sources.is_empty() && i + 1 == n {
            // GNU parallel's loop ends before looking at it.
            break;
        }
        match (sep, sources.last_mut()) {
            (Some((kind, linked)), _) => sources.push(RawSource {
                kind,
                linked,
                words: Vec::new(),
            }),
            (None, Some(source)) => source.words.push(word),
            (None, None) => head.push(word),
        }
    }
    (head, sources)
}

/// Pre-scans one chunk of arguments (profile, environment or command line)
/// and splits it into its options and the words from the first non-option
/// on.
///
/// # Errors
/// An ambiguous abbreviation.
pub(crate) fn options_and_rest(
    chunk: Vec<OsString>,
    infos: &[OptionInfo],
) -> anyhow::Result<(Vec<OsString>, Vec<OsString>)> {
    let normalized = gnu::normalize(chunk.clone(), infos)?;
    // `normalize` keeps the words from the first non-option on unchanged at
    // the end; find where they start by counting the options it made.
    let mut options = Vec::new();
    let mut i = 0;
    while i < normalized.len() {
        let w = normalized[i].to_str().unwrap_or("");
        if w == "--" {
            return Ok((options, normalized[i + 1..].to_vec()));
        }
        if !(w.len() > 1 && w.starts_with('-')) {
            break;
        }
        options.push(normalized[i].clone());
        if takes_next(w, infos) {
            if let Some(v) = normalized.get(i + 1) {
                options.push(v.clone());
                i += 1;
            }
        }
        i += 1;
    }
    Ok((options, normalized[i..].to_vec()))
}

/// Whether a normalized option word takes the next word as its value.
fn takes_next(word: &str, infos: &[OptionInfo]) -> bool {
    if let Some(body) = word.strip_prefix("--") {
        if body.contains('=') {
            return false;
        }
        return infos
            .iter()
            .any(|o| o.arity == Arity::Value && o.long.iter().any(|l| l == body));
    }
    // A bundle: the first value-taking letter takes the rest or the next.
    let chars: Vec<char> = word[1..].chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let arity = infos.iter().find(|o| o.short == Some(*c)).map(|o| o.arity);
        if arity == Some(Arity::Value) {
            return i + 1 == chars.len();
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_split_command_from_sources() {
        let words = ["echo", "{}", ":::", "a", "b", ":::+", "1", "2", "::::", "f"]
            .map(String::from)
            .to_vec();
        let (head, sources) = split_separators(words, ":::", "::::");
        assert_eq!(head, vec!["echo", "{}"]);
        assert_eq!(sources.len(), 3);
        assert_eq!(sources[0].words, vec!["a", "b"]);
        assert!(sources[1].linked);
        assert_eq!(sources[2].kind, SourceKind::Files);
    }

    #[test]
    fn custom_separators() {
        let words = ["echo", ",,", "a", ":::", "b"].map(String::from).to_vec();
        let (head, sources) = split_separators(words, ",,", "::::");
        assert_eq!(head, vec!["echo"]);
        assert_eq!(sources[0].words, vec!["a", ":::", "b"]);
    }

    #[test]
    fn every_gnu_option_name_is_unique() {
        // clap panics on duplicate names when building the command.
        command().debug_assert();
    }

    /// Every option name of GNU parallel 20221122 (its `options_hash`),
    /// long aliases and single letters.
    const GNU_OPTIONS: &[&str] = &[
        "0",
        "B",
        "C",
        "D",
        "E",
        "H",
        "I",
        "J",
        "L",
        "M",
        "N",
        "P",
        "S",
        "T",
        "U",
        "V",
        "W",
        "X",
        "Y",
        "_parset",
        "_pipe-means-argfiles",
        "_test",
        "a",
        "arg-file",
        "arg-file-sep",
        "arg-sep",
        "argfile",
        "argfilesep",
        "argsep",
        "bar",
        "basefile",
        "basenameextensionreplace",
        "basenamereplace",
        "bf",
        "bg",
        "bin",
        "block",
        "block-size",
        "block-timeout",
        "blocksize",
        "blocktimeout",
        "bner",
        "bnr",
        "bt",
        "bug",
        "cat",
        "cf",
        "cleanup",
        "col-sep",
        "color",
        "color-fail",
        "color-failed",
        "colorfail",
        "colorfailed",
        "colour",
        "colour-fail",
        "colour-failed",
        "colourfail",
        "colourfailed",
        "colsep",
        "compress",
        "compress-program",
        "compressprogram",
        "controlmaster",
        "csv",
        "ctag",
        "ctag-string",
        "ctagstring",
        "ctrl-c",
        "ctrlc",
        "d",
        "debug",
        "decompress-program",
        "decompressprogram",
        "delay",
        "delimiter",
        "dirnamereplace",
        "dnr",
        "dr",
        "dry-run",
        "dryrun",
        "e",
        "embed",
        "env",
        "eof",
        "er",
        "eta",
        "exit",
        "extensionreplace",
        "fg",
        "fifo",
        "files",
        "filter",
        "filter-host",
        "filter-hosts",
        "filterhosts",
        "g",
        "gnu",
        "group",
        "group-by",
        "groupby",
        "h",
        "halt",
        "halt-on-error",
        "haltonerror",
        "hashbang",
        "header",
        "help",
        "hgrp",
        "hostgroup",
        "hostgroups",
        "hostgrp",
        "i",
        "id",
        "interactive",
        "j",
        "jl",
        "joblog",
        "jobs",
        "k",
        "keep-order",
        "keeporder",
        "l",
        "latest-line",
        "latestline",
        "lb",
        "limit",
        "line-buffer",
        "line-buffered",
        "linebuffer",
        "linebuffered",
        "link",
        "linkinputsource",
        "ll",
        "load",
        "m",
        "max-args",
        "max-chars",
        "max-line-length-allowed",
        "max-lines",
        "max-procs",
        "max-replace-args",
        "maxargs",
        "maxchars",
        "maxlinelengthallowed",
        "maxlines",
        "maxprocs",
        "maxreplaceargs",
        "memfree",
        "memsuspend",
        "min-version",
        "minversion",
        "n",
        "nice",
        "nn",
        "no-ctrl-c",
        "no-ctrlc",
        "no-k",
        "no-keep-order",
        "no-notice",
        "no-run-if-empty",
        "noctrlc",
        "nok",
        "nokeeporder",
        "nonall",
        "nonotice",
        "norunifempty",
        "noswap",
        "null",
        "number-of-cores",
        "number-of-cpus",
        "number-of-sockets",
        "number-of-threads",
        "numberofcores",
        "numberofcpus",
        "numberofsockets",
        "numberofthreads",
        "o",
        "onall",
        "open-tty",
        "output-as-files",
        "outputasfiles",
        "p",
        "parens",
        "pipe",
        "pipe-part",
        "pipepart",
        "plain",
        "plus",
        "process-slot-var",
        "processslotvar",
        "profile",
        "progress",
        "q",
        "quote",
        "r",
        "recend",
        "record-env",
        "recordenv",
        "recstart",
        "regex",
        "regexp",
        "remove-rec-sep",
        "removerecsep",
        "replace",
        "res",
        "result",
        "results",
        "resume",
        "resume-failed",
        "resumefailed",
        "retries",
        "retry-failed",
        "retryfailed",
        "return",
        "round",
        "round-robin",
        "roundrobin",
        "rpl",
        "rrs",
        "rsync-opts",
        "rsyncopts",
        "s",
        "semaphore",
        "semaphore-name",
        "semaphore-timeout",
        "semaphorename",
        "semaphoretimeout",
        "seqreplace",
        "session",
        "shard",
        "shebang",
        "shell-completion",
        "shell-quote",
        "shell_quote",
        "shellcompletion",
        "shellquote",
        "show-limits",
        "showlimits",
        "shuf",
        "silent",
        "skip-first-line",
        "skipfirstline",
        "slf",
        "slotreplace",
        "spreadstdin",
        "sql",
        "sql-and-worker",
        "sql-master",
        "sql-worker",
        "sqlandworker",
        "sqlmaster",
        "sqlworker",
        "ssh",
        "ssh-delay",
        "sshdelay",
        "sshlogin",
        "sshloginfile",
        "st",
        "t",
        "tag",
        "tag-string",
        "tagstring",
        "tee",
        "tempdir",
        "template",
        "term-seq",
        "termseq",
        "tf",
        "timeout",
        "tmpdir",
        "tmpl",
        "tmux",
        "tmux-pane",
        "tmuxpane",
        "tollef",
        "total",
        "total-jobs",
        "totaljobs",
        "transfer",
        "transfer-file",
        "transfer-files",
        "transferfile",
        "transferfiles",
        "trc",
        "trim",
        "tty",
        "u",
        "ungroup",
        "use-compress-program",
        "use-cores-instead-of-threads",
        "use-cpus-instead-of-cores",
        "use-decompress-program",
        "use-sockets-instead-of-threads",
        "usecompressprogram",
        "usecoresinsteadofthreads",
        "usecpusinsteadofcores",
        "usedecompressprogram",
        "usesocketsinsteadofthreads",
        "v",
        "verbose",
        "version",
        "wait",
        "wd",
        "will-cite",
        "willcite",
        "work-dir",
        "workdir",
        "x",
        "xapply",
        "xapplyinputsource",
        "xargs",
    ];

    #[test]
    fn every_gnu_option_name_is_known() {
        let cmd = command();
        let infos = option_infos(&cmd);
        for name in GNU_OPTIONS {
            let known = if name.len() == 1 {
                let c = name.chars().next().unwrap();
                infos
                    .iter()
                    .any(|o| o.short == Some(c) || o.long.iter().any(|l| l == name))
            } else {
                infos.iter().any(|o| o.long.iter().any(|l| l == name))
            };
            assert!(
                known,
                "GNU parallel's option {name} is neither implemented nor refused"
            );
        }
    }

    #[test]
    fn every_option_gnu_parallel_lacks_is_marked_fanout_only() {
        let cmd = command();
        let infos = option_infos(&cmd);
        for info in &infos {
            for name in &info.long {
                if name.len() > 1 && !GNU_OPTIONS.contains(&name.as_str()) {
                    assert!(
                        super::super::gnu::FANOUT_ONLY.contains(&name.as_str()),
                        "--{name} is not GNU parallel's: list it in FANOUT_ONLY"
                    );
                }
            }
        }
    }

    #[test]
    fn options_after_the_command_belong_to_the_command() {
        let cmd = command();
        let infos = option_infos(&cmd);
        let (opts, rest) = options_and_rest(
            ["-k", "grep", "-v", "x"].map(OsString::from).to_vec(),
            &infos,
        )
        .unwrap();
        assert_eq!(opts, vec![OsString::from("-k")]);
        assert_eq!(rest.len(), 3);
    }
}
