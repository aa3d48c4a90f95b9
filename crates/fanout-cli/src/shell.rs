//! Which shell runs the jobs, chosen as GNU parallel chooses it:
//! `$PARALLEL_SHELL`, else the shell fanout was started from (the nearest
//! ancestor process whose name is a shell's), else `$SHELL`, else `/bin/sh`.
//! So `export -f myfunc; fanout myfunc ::: a` works from bash, as with GNU
//! parallel.

use std::path::Path;

use anyhow::bail;
use regex::Regex;

/// The shells GNU parallel recognises in a process name.
const SHELLS: &[&str] = &[
    "ash",
    "bash",
    "bsd-csh",
    "csh",
    "dash",
    "fdsh",
    "fish",
    "fizsh",
    "ksh",
    "ksh93",
    "lksh",
    "mksh",
    "pdksh",
    "posh",
    "rbash",
    "rc",
    "rush",
    "rzsh",
    "sash",
    "sh",
    "static-sh",
    "tcsh",
    "yash",
    "zsh",
    "-sh",
    "-csh",
    "-bash",
    "-sh (sh)",
];

/// The shell jobs run with.
#[derive(Debug, Clone)]
pub(crate) struct Shell {
    /// Its path (or name, looked up in `$PATH` when run).
    pub(crate) path: String,
}

impl Shell {
    /// Finds the shell as GNU parallel does.
    ///
    /// # Errors
    /// The chosen shell does not exist, or it is csh or rc, whose quoting
    /// fanout does not implement.
    pub(crate) fn detect() -> anyhow::Result<Shell> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let path = var("PARALLEL_SHELL")
            .or_else(parent_shell)
            .or_else(|| var("SHELL"))
            .unwrap_or_else(|| "/bin/sh".to_owned());
        let exists = if path.contains('/') {
            is_executable(Path::new(&path))
        } else {
            which(&path).is_some()
        };
        if !exists {
            bail!(
                "shell '{path}' not found; set $PARALLEL_SHELL to the shell jobs should run with"
            );
        }
        let csh = Regex::new("(/[-a-z]*)?csh").expect("valid");
        let rc = Regex::new("(^|/)rc$").expect("valid");
        if csh.is_match(&path) || rc.is_match(&path) {
            bail!(
                "jobs would run with {path}, whose quoting fanout does not implement (GNU parallel \
                 quotes differently for csh and rc); set $PARALLEL_SHELL=/bin/sh or run fanout from \
                 a POSIX shell"
            );
        }
        Ok(Shell { path })
    }

    /// Whether the environment exports a shell function `name` that this
    /// shell would run (bash imports `BASH_FUNC_name%%` variables).
    pub(crate) fn has_function(&self, name: &str) -> bool {
        std::env::var_os(format!("BASH_FUNC_{name}%%")).is_some()
            || std::env::var_os(format!("BASH_FUNC_{name}()")).is_some()
    }
}

/// GNU parallel's `parent_shell`: from this process up, the first whose
/// `argv[0]` names a shell; its path found in `$PATH` (or, for a login
/// `-sh`, from `/proc/PID/exe`).
fn parent_shell() -> Option<String> {
    let names = SHELLS
        .iter()
        .map(|s| regex::escape(s))
        .collect::<Vec<_>>()
        .join("|");
    let pattern = format!(r"^((\[)(-?)({names})(\])|(|\S+/|busybox )(-?)({names}))( *$| [^(])");
    let re = Regex::new(&pattern).ok()?;
    let mut pid = std::process::id();
    let mut steps = 0;
    while pid != 0 && steps < 64 {
        steps += 1;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or(&[]);
        let argv0 = String::from_utf8_lossy(argv0);
        if let Some(caps) = re.captures(&argv0) {
            let name = caps.get(4).or_else(|| caps.get(8))?.as_str();
            let dash = caps
                .get(3)
                .or_else(|| caps.get(7))
                .is_some_and(|d| !d.as_str().is_empty());
            if name == "sh" && dash {
                if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
                    let exe = exe.to_string_lossy().into_owned();
                    if SHELLS.iter().any(|s| exe.ends_with(&format!("/{s}"))) {
                        return Some(exe);
                    }
                }
            }
            let candidates: &[&str] = match name {
                "-sh (sh)" | "-sh" => &["sh"],
                "-csh" => &["tcsh", "csh"],
                "-bash" => &["bash", "sh"],
                other => &[other][..],
            };
            return candidates.iter().find_map(|c| which(c));
        }
        pid = parent_of(pid)?;
    }
    None
}

/// The parent of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The first executable `name` in `$PATH`.
pub(crate) fn which(name: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .map(|p| p.to_string_lossy().into_owned())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_runner_has_no_shell_ancestor_or_finds_a_real_one() {
        if let Some(found) = parent_shell() {
            assert!(Path::new(&found).exists(), "{found}");
        }
    }

    #[test]
    fn which_finds_sh() {
        assert!(which("sh").is_some());
        assert!(which("no-such-program-fanout").is_none());
    }
}
