//! The `fanout` command: run a command for each input, in parallel, with
//! GNU parallel's conventions and a journal that survives `kill -9`.
//!
//! Four stages: `flags` parses argv into validated [`flags::HiArgs`];
//! [`plan::Plan::prepare`] opens the journal and everything else a run
//! needs, starting nothing; [`plan::Plan::run`] runs the jobs; the
//! [`run::Ending`] it returns gives the exit code. See `docs/CLI.md` for
//! the user guide and the differences from GNU parallel.

mod batch;
mod cpus;
mod flags;
mod input;
mod job;
mod joblog;
mod leftovers;
mod limits;
mod output;
mod pipe;
mod plan;
mod quote;
mod remote;
mod results;
mod run;
mod shell;
mod spawn;
mod starter;
mod template;
mod termseq;
mod timeline;

use std::io::Write;
use std::process::ExitCode;

use flags::{HiArgs, Parsed};
use plan::Plan;

fn main() -> ExitCode {
    // Jobs must be waited for, whatever fanout's caller did to SIGCHLD.
    spawn::reset_sigchld();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    // `fanout timeline JOBLOG`: only as the very first word, so a program
    // named `timeline` still runs with any option before it (`fanout -k
    // timeline ...`) or after `--`.
    if argv.first().is_some_and(|a| a == "timeline") {
        let code = timeline::main(argv[1..].to_vec());
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    // `fanout worker ...`: the same rule.
    if argv.first().is_some_and(|a| a == "worker") {
        let code = remote::worker::main(argv[1..].to_vec());
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let code = match HiArgs::parse(argv) {
        Ok(Parsed::Print(text, code)) => {
            print!("{text}");
            let _ = std::io::stdout().flush();
            code
        }
        Ok(Parsed::Run(args)) => run(*args),
        Err(e) => report(&e),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Plans the run, runs it, and returns its exit code.
fn run(args: HiArgs) -> i32 {
    // One thread: job futures and the run loop never run at the same time,
    // which the process-group bookkeeping relies on.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report(&anyhow::Error::new(e).context("cannot start the runtime")),
    };
    runtime.block_on(async {
        match Plan::prepare(args).await {
            Ok(plan) => plan.run().await.exit_code(),
            Err(e) => report(&e),
        }
    })
}

/// Reports a tool error the way GNU parallel does: one message, exit 255.
fn report(e: &anyhow::Error) -> i32 {
    eprintln!("fanout: {e:#}");
    run::TOOL_ERROR
}
