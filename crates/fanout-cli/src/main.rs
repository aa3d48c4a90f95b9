//! The `fanout` command: run a command for each input, in parallel, with
//! GNU parallel's conventions and a journal that survives `kill -9`.
//!
//! `flags` turns argv into a validated [`flags::Config`]; `run` executes it.
//! See `docs/CLI.md` for the user guide and the differences from GNU
//! parallel.

mod flags;
mod input;
mod job;
mod joblog;
mod leftovers;
mod output;
mod quote;
mod results;
mod run;
mod spawn;
mod template;

use std::process::ExitCode;

use flags::{Config, Parsed};

fn main() -> ExitCode {
    let code = match Config::parse(std::env::args_os().skip(1).collect()) {
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            0
        }
        Ok(Parsed::Run(config)) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            // One thread: job futures and the run loop never run at the same
            // time, which the process-group bookkeeping relies on.
            Ok(runtime) => match runtime.block_on(run::run(*config)) {
                Ok(code) => code,
                Err(e) => error(&e),
            },
            Err(e) => error(&anyhow::Error::new(e).context("cannot start the runtime")),
        },
        Err(e) => error(&e),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Reports a tool error the way GNU parallel does: one message, exit 255.
fn error(e: &anyhow::Error) -> i32 {
    eprintln!("fanout: {e:#}");
    run::TOOL_ERROR
}
