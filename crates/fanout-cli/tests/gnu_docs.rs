//! Runs the command examples of GNU parallel's own documentation
//! (`tests/gnu_docs/examples.txt`, extracted by `scripts/gnu-docs-extract.py`)
//! once with GNU parallel and once with fanout standing in for `parallel`,
//! and classifies each example:
//!
//! - `identical`: same stdout, same exit status, same files left in the
//!   example's directory (stderr may differ);
//! - `refused`: fanout exited 255 with a message on stderr (something it
//!   does not support);
//! - `differs`: anything else.
//!
//! The test prints a table and a summary, and fails when an example's class
//! is not the one `tests/gnu_docs/expected.txt` records. With
//! `FANOUT_GNU_DOCS_BLESS=1` it rewrites that file instead;
//! `FANOUT_GNU_DOCS_ONLY=id,id` runs only those examples (no comparison
//! with the expectations) and prints both tools' output;
//! `FANOUT_GNU_DOCS_VERBOSE=1` prints it for every example. Skipped with a
//! note when GNU parallel is not installed. `tests/gnu_docs/README.md`
//! explains the rules.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// How long one tool may run one example.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Examples run at once (each runs GNU parallel, then fanout).
const WORKERS: usize = 3;
/// The PATH after the stand-ins and the tool: Debian's default, without
/// /usr/local (so nothing installed by hand changes what an example sees).
const SYSTEM_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gnu_docs")
}

/// How stdout and files are compared.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Order {
    /// Byte for byte (`-k`, one job at a time).
    Exact,
    /// As multisets of lines (completion order varies between runs).
    Sorted,
}

/// One record of examples.txt.
#[derive(Debug, Default)]
struct Example {
    id: String,
    section: String,
    run: bool,
    order: Option<Order>,
    serial: bool,
    /// Runs of both tools allowed before the example counts as not
    /// identical (for documented races: see README.md).
    attempts: u32,
    fixture: String,
    prelude: String,
    filter: String,
    after: String,
    stdin: String,
    command: String,
}

fn parse_examples(text: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let mut cur: Option<Example> = None;
    let mut key = String::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            out.extend(cur.take());
            continue;
        }
        let ex = cur.get_or_insert_with(Example::default);
        let (k, value) = if let Some(rest) = line.strip_prefix('|') {
            (
                key.clone(),
                rest.strip_prefix(' ').unwrap_or(rest).to_owned(),
            )
        } else {
            let (k, v) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("examples.txt:{}: expected `key: value`", n + 1));
            key = k.to_owned();
            (key.clone(), v.trim_start().to_owned())
        };
        let continued = line.starts_with('|');
        let append = |field: &mut String| {
            if continued && !field.is_empty() {
                field.push('\n');
            }
            field.push_str(&value);
        };
        match k.as_str() {
            "id" => ex.id = value,
            "section" => ex.section = value,
            "status" => ex.run = value == "run",
            "order" => {
                ex.order = Some(if value == "exact" {
                    Order::Exact
                } else {
                    Order::Sorted
                })
            }
            "serial" => ex.serial = true,
            "attempts" => ex.attempts = value.parse().expect("attempts: a number"),
            "fixture" => append(&mut ex.fixture),
            "prelude" => append(&mut ex.prelude),
            "filter" => append(&mut ex.filter),
            "after" => append(&mut ex.after),
            "stdin" => append(&mut ex.stdin),
            "command" => append(&mut ex.command),
            _ => {}
        }
    }
    out.extend(cur);
    out
}

/// What one tool did with one example.
#[derive(Debug)]
struct Outcome {
    /// Exit code, `128+N` for a signal, `None` on timeout.
    status: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Exit codes of each `parallel` call, in order.
    calls: Vec<i32>,
    /// The work directory afterwards: path -> description.
    tree: BTreeMap<String, Vec<u8>>,
    elapsed: Duration,
}

/// The tool standing in for `parallel`.
#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Gnu,
    Fanout,
}

fn write_file(path: &Path, contents: &str, mode: u32) {
    std::fs::write(path, contents).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Single-quotes `s` for bash.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Kills (SIGKILL) every process whose environment carries `marker`: the
/// example's shell and everything it started, whatever process group or
/// session they moved to. Returns how many were signalled.
fn kill_marked(marker: &str) -> usize {
    let needle = format!("GNU_DOCS_RUN={marker}\0");
    let mut killed = 0;
    // Processes may fork while we scan: repeat until a scan finds none.
    for _ in 0..50 {
        let mut found = 0;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return killed;
        };
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(env) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if env.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                found += 1;
            }
        }
        if found == 0 {
            break;
        }
        killed += found;
    }
    killed
}

/// Runs `script` with bash in `dir`, with `env`, stdin from `stdin` (a
/// file) and stdout/stderr to files; kills everything it started when it
/// ends or after `timeout`. Returns (exit status or None on timeout, stdout,
/// stderr).
fn run_bash(
    script: &str,
    dir: &Path,
    env: &[(String, String)],
    stdin: &Path,
    out: &Path,
    marker: &str,
    timeout: Duration,
) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    let err = out.with_extension("err");
    let mut cmd = Command::new("/bin/bash");
    cmd.arg("-c")
        .arg(script)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("GNU_DOCS_RUN", marker)
        .stdin(std::fs::File::open(stdin).expect("stdin"))
        .stdout(std::fs::File::create(out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn bash");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait().expect("wait");
        let _ = tx.send(status);
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(status) => Some(status),
        Err(_) => {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            kill_marked(marker);
            let _ = rx.recv();
            None
        }
    };
    waiter.join().expect("waiter");
    // Anything the example left running in the background goes too.
    kill_marked(marker);
    let code = status.map(|s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)));
    (
        code,
        std::fs::read(out).unwrap_or_default(),
        std::fs::read(&err).unwrap_or_default(),
    )
}

/// Replaces every occurrence of `from` in `data` by `to`.
fn replace_bytes(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        return data.to_vec();
    }
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// The work directory's entries (not following symlinks): relative path ->
/// kind and contents, with the run's root directory replaced by `$ROOT`.
fn walk(dir: &Path, base: &Path, root: &[u8], tree: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path
            .strip_prefix(base)
            .expect("under base")
            .to_string_lossy()
            .into_owned();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let value = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap_or_default();
            let mut v = b"symlink -> ".to_vec();
            v.extend(replace_bytes(
                target.to_string_lossy().as_bytes(),
                root,
                b"$ROOT",
            ));
            v
        } else if meta.is_dir() {
            walk(&path, base, root, tree);
            b"directory".to_vec()
        } else if meta.is_file() {
            let mut v = b"file: ".to_vec();
            v.extend(replace_bytes(
                &std::fs::read(&path).unwrap_or_default(),
                root,
                b"$ROOT",
            ));
            v
        } else {
            b"special file".to_vec()
        };
        tree.insert(rel, value);
    }
}

/// Copies the directory tree `from` into `to` (which exists).
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A PARALLEL_HOME for GNU parallel to start from: `will-cite` (no
/// citation notice) and the machine facts GNU parallel caches on its first
/// run (it spends ~0.15 s finding them out), so that every example's
/// fresh home is a copy of the same state.
fn parallel_home_template(gnu: &Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("gnu-docs-home-")
        .tempdir()
        .expect("tempdir");
    write_file(&dir.path().join("will-cite"), "", 0o644);
    let status = Command::new(gnu)
        .args(["echo", ":::", "warm-up"])
        .env("PARALLEL_HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run GNU parallel");
    assert!(status.success(), "GNU parallel failed to run");
    dir
}

/// Runs `ex` with `tool` as `parallel` in a fresh directory.
fn run_example(ex: &Example, tool: Tool, gnu: &Path, fanout: &Path, template: &Path) -> Outcome {
    let root_dir = tempfile::Builder::new()
        .prefix("gnu-docs-")
        .tempdir()
        .expect("tempdir");
    let root = root_dir.path();
    let sub = |name: &str| {
        let p = root.join(name);
        std::fs::create_dir(&p).expect("mkdir");
        p
    };
    let (work, home, tmp, bin, tooldir) = (
        sub("work"),
        sub("home"),
        sub("tmp"),
        sub("bin"),
        sub("tool"),
    );
    // GNU parallel's default PARALLEL_HOME, where the examples put
    // profiles (`~/.parallel/nice_profile`).
    let parhome = home.join(".parallel");
    std::fs::create_dir(&parhome).expect("mkdir");
    // No citation notice, no user configuration.
    copy_tree(template, &parhome);
    let real = match tool {
        Tool::Gnu => gnu,
        Tool::Fanout => fanout,
    };
    // `parallel` records each call's exit code, so that a refusal is seen
    // even when a later command of the example decides the exit status.
    let calls = root.join("calls");
    write_file(
        &tooldir.join("parallel"),
        &format!(
            "#!/bin/bash\n{} \"$@\"\nrc=$?\necho $rc >> {}\nexit $rc\n",
            sh_quote(&real.to_string_lossy()),
            sh_quote(&calls.to_string_lossy())
        ),
        0o755,
    );
    let path_of = |with_tool: bool| {
        let mut p = bin.to_string_lossy().into_owned();
        if with_tool {
            p.push(':');
            p.push_str(&tooldir.to_string_lossy());
        }
        p.push(':');
        p.push_str(SYSTEM_PATH);
        p
    };
    let mut env: Vec<(String, String)> = vec![
        ("HOME".into(), home.to_string_lossy().into_owned()),
        ("TMPDIR".into(), tmp.to_string_lossy().into_owned()),
        (
            "PARALLEL_HOME".into(),
            parhome.to_string_lossy().into_owned(),
        ),
        ("LC_ALL".into(), "C.UTF-8".into()),
        ("SHELL".into(), "/bin/bash".into()),
        ("USER".into(), "root".into()),
        ("LOGNAME".into(), "root".into()),
        ("TERM".into(), "dumb".into()),
        ("FIXTURE_BIN".into(), bin.to_string_lossy().into_owned()),
    ];
    let marker = root.to_string_lossy().into_owned();
    let stdin = root.join("stdin");
    write_file(&stdin, &ex.stdin, 0o644);
    let null = Path::new("/dev/null");
    let with_fixtures = |snippet: &str| {
        format!(
            "source {}\n{snippet}",
            sh_quote(&data_dir().join("fixtures.sh").to_string_lossy())
        )
    };
    if !ex.fixture.is_empty() {
        let mut e = env.clone();
        e.push(("PATH".into(), path_of(false)));
        let (code, _, err) = run_bash(
            &format!("set -e\n{}", with_fixtures(&ex.fixture)),
            &work,
            &e,
            null,
            &root.join("fixture.out"),
            &marker,
            TIMEOUT,
        );
        assert_eq!(
            code,
            Some(0),
            "{}: fixture failed: {}",
            ex.id,
            String::from_utf8_lossy(&err)
        );
    }
    // The same modification time for every file the fixture made, so that
    // archives, `date -r` and `ls -l` do not depend on when it ran.
    let touched = Command::new("find")
        .arg(".")
        .args(["-exec", "touch", "-h", "-d", "@1700000000", "{}", "+"])
        .current_dir(&work)
        .status()
        .expect("find");
    assert!(touched.success(), "{}: touch failed", ex.id);
    env.push(("PATH".into(), path_of(true)));
    let start = Instant::now();
    let script = if ex.prelude.is_empty() {
        ex.command.clone()
    } else {
        format!("{}\n{}", ex.prelude, ex.command)
    };
    let (status, mut stdout, stderr) = run_bash(
        &script,
        &work,
        &env,
        &stdin,
        &root.join("out"),
        &marker,
        TIMEOUT,
    );
    let elapsed = start.elapsed();
    let root_bytes = root.to_string_lossy().into_owned().into_bytes();
    if !ex.after.is_empty() {
        let (_, after, _) = run_bash(
            &with_fixtures(&ex.after),
            &work,
            &env,
            null,
            &root.join("after.out"),
            &marker,
            TIMEOUT,
        );
        stdout.extend_from_slice(b"\n--- after ---\n");
        stdout.extend(after);
    }
    let mut stdout = replace_bytes(&stdout, &root_bytes, b"$ROOT");
    if !ex.filter.is_empty() {
        let raw = root.join("raw-stdout");
        std::fs::write(&raw, &stdout).expect("write");
        let (_, filtered, _) = run_bash(
            &with_fixtures(&ex.filter),
            &work,
            &env,
            &raw,
            &root.join("filtered"),
            &marker,
            TIMEOUT,
        );
        stdout = filtered;
    }
    let calls = std::fs::read_to_string(&calls)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let mut tree = BTreeMap::new();
    walk(&work, &work, &root_bytes, &mut tree);
    // Make sure everything is removable (examples may chmod).
    let _ = Command::new("chmod")
        .args(["-R", "u+rwx"])
        .arg(root)
        .stderr(Stdio::null())
        .status();
    Outcome {
        status,
        stdout,
        stderr,
        calls,
        tree,
        elapsed,
    }
}

/// The lines of `data`, sorted when `order` says so.
fn comparable(data: &[u8], order: Order) -> Vec<u8> {
    match order {
        Order::Exact => data.to_vec(),
        Order::Sorted => {
            let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
            if data.ends_with(b"\n") {
                lines.pop();
            }
            lines.sort();
            lines.join(&b'\n')
        }
    }
}

fn show(data: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(data);
    let s: String = s.chars().take(max).collect();
    format!("{s:?}")
}

/// The first line where `a` and `b` differ, for the table.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let la: Vec<&[u8]> = a.split(|&c| c == b'\n').collect();
    let lb: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
    for i in 0..la.len().max(lb.len()) {
        let x = la.get(i).copied();
        let y = lb.get(i).copied();
        if x != y {
            return format!(
                "line {}: gnu {} fanout {}",
                i + 1,
                x.map_or("<none>".into(), |x| show(x, 50)),
                y.map_or("<none>".into(), |y| show(y, 50))
            );
        }
    }
    "same lines, different bytes".into()
}

fn status_text(s: Option<i32>) -> String {
    s.map_or("timeout".into(), |c| c.to_string())
}

/// fanout's joblog sidecar `FILE.fanout` (the journal's fingerprint, a
/// documented addition: docs/CLI.md, "The journal and --resume") next to a
/// joblog `FILE` both tools wrote is not compared.
fn is_journal_sidecar(key: &str, gnu: &Outcome, ours: &Outcome) -> bool {
    let Some(journal) = key.strip_suffix(".fanout") else {
        return false;
    };
    !gnu.tree.contains_key(key)
        && gnu.tree.contains_key(journal)
        && ours.tree.contains_key(journal)
        && ours
            .tree
            .get(key)
            .is_some_and(|v| v.starts_with(b"file: fanout-joblog"))
}

/// Classifies one example from both outcomes: (class, reason).
fn classify(order: Order, gnu: &Outcome, ours: &Outcome) -> (&'static str, String) {
    let (g, f) = (
        comparable(&gnu.stdout, order),
        comparable(&ours.stdout, order),
    );
    let mut problems = Vec::new();
    if gnu.status != ours.status {
        problems.push(format!(
            "exit {} vs {}",
            status_text(gnu.status),
            status_text(ours.status)
        ));
    }
    if g != f {
        problems.push(format!("stdout {}", first_difference(&g, &f)));
    }
    let keys: std::collections::BTreeSet<&String> =
        gnu.tree.keys().chain(ours.tree.keys()).collect();
    for k in keys {
        let (a, b) = (gnu.tree.get(k), ours.tree.get(k));
        if is_journal_sidecar(k, gnu, ours) {
            continue;
        }
        let same = match (a, b) {
            (Some(a), Some(b)) => comparable(a, order) == comparable(b, order),
            _ => false,
        };
        if !same {
            problems.push(match (a, b) {
                (Some(_), None) => format!("file {k} only with gnu"),
                (None, Some(_)) => format!("file {k} only with fanout"),
                _ => format!("file {k} differs"),
            });
            break;
        }
    }
    if problems.is_empty() {
        if gnu.status.is_none() {
            return ("identical", "both timed out".into());
        }
        return ("identical", String::new());
    }
    if ours.calls.contains(&255) && !ours.stderr.is_empty() {
        let msg = String::from_utf8_lossy(&ours.stderr);
        // fanout's own message, else the first line.
        let line = msg
            .lines()
            .find(|l| l.starts_with("fanout:"))
            .or_else(|| msg.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or("")
            .to_owned();
        return ("refused", line);
    }
    ("differs", problems.join("; "))
}

/// GNU parallel's path, or None when `parallel` on PATH is not GNU's.
fn find_gnu_parallel() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|d| d.join("parallel"))
        .find(|p| p.is_file())?;
    let version = Command::new(&found)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&version.stdout)
        .contains("GNU parallel")
        .then_some(found)
}

/// Result of one example, for the table.
struct Row {
    id: String,
    class: &'static str,
    /// Exit statuses: GNU parallel's, fanout's.
    exits: (String, String),
    reason: String,
    seconds: f64,
}

fn read_expected(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_owned(), w.next()?.to_owned()))
        })
        .collect()
}

#[test]
fn gnu_parallel_documentation_examples() {
    let Some(gnu) = find_gnu_parallel() else {
        eprintln!("note: GNU parallel is not installed; skipping the documentation examples");
        return;
    };
    let fanout = PathBuf::from(env!("CARGO_BIN_EXE_fanout"));
    let text = std::fs::read_to_string(data_dir().join("examples.txt")).expect("examples.txt");
    let all = parse_examples(&text);
    let only: Option<Vec<String>> = std::env::var("FANOUT_GNU_DOCS_ONLY")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let verbose = only.is_some() || std::env::var_os("FANOUT_GNU_DOCS_VERBOSE").is_some();
    let excluded = all.iter().filter(|e| !e.run).count();
    let examples: Vec<&Example> = all
        .iter()
        .filter(|e| e.run)
        .filter(|e| only.as_ref().is_none_or(|o| o.contains(&e.id)))
        .collect();
    let home = parallel_home_template(&gnu);
    let home = home.path();
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let serial = Mutex::new(());
    let rows = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(ex) = examples.get(i) else { break };
                let _guard = ex
                    .serial
                    .then(|| serial.lock().unwrap_or_else(|e| e.into_inner()));
                let t = Instant::now();
                let order = ex.order.unwrap_or(Order::Sorted);
                let mut attempt = 1;
                let (g, f, class, reason) = loop {
                    let g = run_example(ex, Tool::Gnu, &gnu, &fanout, home);
                    let f = run_example(ex, Tool::Fanout, &gnu, &fanout, home);
                    let (class, reason) = classify(order, &g, &f);
                    if class == "identical" || attempt >= ex.attempts {
                        break (g, f, class, reason);
                    }
                    attempt += 1;
                };
                if verbose {
                    eprintln!(
                        "=== {} [{}] {class}: {reason}\n{}\n--- gnu: exit {} ({:.1}s) calls {:?}\nstdout:\n{}\nstderr:\n{}\n--- fanout: exit {} ({:.1}s) calls {:?}\nstdout:\n{}\nstderr:\n{}",
                        ex.id,
                        ex.section,
                        ex.command,
                        status_text(g.status),
                        g.elapsed.as_secs_f64(),
                        g.calls,
                        String::from_utf8_lossy(&g.stdout),
                        String::from_utf8_lossy(&g.stderr),
                        status_text(f.status),
                        f.elapsed.as_secs_f64(),
                        f.calls,
                        String::from_utf8_lossy(&f.stdout),
                        String::from_utf8_lossy(&f.stderr),
                    );
                }
                rows.lock().unwrap_or_else(|e| e.into_inner()).push(Row {
                    id: ex.id.clone(),
                    class,
                    exits: (status_text(g.status), status_text(f.status)),
                    reason,
                    seconds: t.elapsed().as_secs_f64(),
                });
            });
        }
    });
    let wall = started.elapsed();
    let mut rows = rows.into_inner().unwrap_or_else(|e| e.into_inner());
    rows.sort_by(|a, b| a.id.cmp(&b.id));

    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<14} {:<9} {:>7} {:>7} {:>5}  reason",
        "id", "class", "gnu", "fanout", "secs"
    );
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.class).or_default() += 1;
        let reason: String = r.reason.chars().take(140).collect();
        let _ = writeln!(
            table,
            "{:<14} {:<9} {:>7} {:>7} {:>5.1}  {reason}",
            r.id, r.class, r.exits.0, r.exits.1, r.seconds
        );
    }
    let summary = format!(
        "GNU parallel documentation examples: {} run ({} identical, {} refused, {} differs), {} excluded; {:.1} s with {} workers",
        rows.len(),
        counts.get("identical").unwrap_or(&0),
        counts.get("refused").unwrap_or(&0),
        counts.get("differs").unwrap_or(&0),
        excluded,
        wall.as_secs_f64(),
        WORKERS,
    );
    println!("{table}\n{summary}");
    if only.is_some() {
        return;
    }

    let expected_path = data_dir().join("expected.txt");
    if std::env::var_os("FANOUT_GNU_DOCS_BLESS").is_some_and(|v| v == "1") {
        let mut out = String::from(
            "# Class of each run example of examples.txt with the current fanout:\n\
             # identical, refused or differs. Written by tests/gnu_docs.rs with\n\
             # FANOUT_GNU_DOCS_BLESS=1; see README.md.\n",
        );
        for r in &rows {
            let _ = writeln!(out, "{} {}", r.id, r.class);
        }
        std::fs::write(&expected_path, out).expect("write expected.txt");
        println!("wrote {}", expected_path.display());
        return;
    }
    let expected = read_expected(&expected_path);
    let mut changed = Vec::new();
    for r in &rows {
        match expected.get(&r.id) {
            Some(c) if c == r.class => {}
            Some(c) => changed.push(format!("{}: {c} -> {} ({})", r.id, r.class, r.reason)),
            None => changed.push(format!("{}: not in expected.txt, now {}", r.id, r.class)),
        }
    }
    for id in expected.keys() {
        if !rows.iter().any(|r| &r.id == id) {
            changed.push(format!("{id}: in expected.txt but not run"));
        }
    }
    assert!(
        changed.is_empty(),
        "{} example(s) changed class; if intended, rerun with FANOUT_GNU_DOCS_BLESS=1 \
         and commit tests/gnu_docs/expected.txt:\n{}",
        changed.len(),
        changed.join("\n")
    );
}
