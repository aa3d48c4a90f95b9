//! The sidecar `FILE.fanout`: which run a journal belongs to, and whether
//! its last run finished.
//!
//! Layout (the second version; `kind` comes from the record format):
//!
//! ```text
//! <kind> 2
//! fingerprint <16 hex digits>
//! run <16 hex digits> running|finished
//! summary <one line of text>
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Error, Fingerprint, PreviousRun, RecordFormat, RunId};

/// The layout version on the sidecar's first line.
const LAYOUT: &str = "2";

/// The sidecar's path: the journal's path with `.fanout` appended
/// (`joblog.tsv` → `joblog.tsv.fanout`).
///
/// ```
/// use std::path::Path;
/// use fanout::journal::sidecar_path;
///
/// assert_eq!(sidecar_path(Path::new("runs/log")), Path::new("runs/log.fanout"));
/// ```
#[must_use]
pub fn sidecar_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".fanout");
    PathBuf::from(name)
}

/// The sidecar of the run that holds the journal.
#[derive(Debug, Clone)]
pub(crate) struct Sidecar {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) run: RunId,
    pub(crate) finished: bool,
    pub(crate) summary: String,
}

/// A sidecar as read.
#[derive(Debug)]
pub(crate) struct ReadSidecar {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) previous: PreviousRun,
}

impl Sidecar {
    /// The sidecar of a new run, not finished yet.
    pub(crate) fn running(fingerprint: Fingerprint, summary: &str) -> Sidecar {
        Sidecar {
            fingerprint,
            run: RunId::new(),
            finished: false,
            summary: summary.replace(['\n', '\r'], " "),
        }
    }

    /// Writes it atomically: a temporary file, synced, renamed over the
    /// sidecar; with `durable`, the directory is synced too, so that the
    /// rename itself survives a power loss.
    pub(crate) fn write(&self, kind: &str, journal: &Path, durable: bool) -> Result<(), Error> {
        let sidecar = sidecar_path(journal);
        let mut tmp = sidecar.clone().into_os_string();
        tmp.push(".tmp");
        let text = format!(
            "{kind} {LAYOUT}\nfingerprint {}\nrun {} {}\nsummary {}\n",
            self.fingerprint,
            self.run,
            if self.finished { "finished" } else { "running" },
            self.summary
        );
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &sidecar)?;
            if durable {
                sync_dir(journal)?;
            }
            Ok(())
        };
        write().map_err(Error::io(&sidecar, "write the journal's sidecar"))
    }

    /// Reads the sidecar of `journal`: `Ok(None)` if there is none.
    pub(crate) fn read<F: RecordFormat + ?Sized>(
        format: &F,
        journal: &Path,
    ) -> Result<Option<ReadSidecar>, Error> {
        let sidecar = sidecar_path(journal);
        let text = match std::fs::read_to_string(&sidecar) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&sidecar, "read the journal's sidecar")(e)),
        };
        let not_ours = || Error::BadSidecar {
            sidecar: sidecar.clone(),
        };
        let mut lines = text.lines();
        let magic = lines.next().ok_or_else(not_ours)?;
        let fingerprint = lines
            .next()
            .and_then(|l| l.strip_prefix("fingerprint "))
            .and_then(Fingerprint::from_hex)
            .ok_or_else(not_ours)?;
        if format.legacy_sidecar() == Some(magic) {
            let summary = lines.next().unwrap_or("").to_owned();
            return Ok(Some(ReadSidecar {
                fingerprint,
                previous: PreviousRun {
                    id: None,
                    finished: false,
                    summary,
                },
            }));
        }
        if magic.strip_suffix(LAYOUT).and_then(|k| k.strip_suffix(' ')) != Some(format.kind()) {
            return Err(not_ours());
        }
        let (id, finished) = lines
            .next()
            .and_then(|l| l.strip_prefix("run "))
            .and_then(|l| l.split_once(' '))
            .and_then(|(id, state)| {
                let id = RunId::from_hex(id)?;
                match state {
                    "running" => Some((id, false)),
                    "finished" => Some((id, true)),
                    _ => None,
                }
            })
            .ok_or_else(not_ours)?;
        let summary = lines
            .next()
            .and_then(|l| l.strip_prefix("summary "))
            .unwrap_or("")
            .to_owned();
        Ok(Some(ReadSidecar {
            fingerprint,
            previous: PreviousRun {
                id: Some(id),
                finished,
                summary,
            },
        }))
    }
}

/// Syncs the directory that holds `journal`, so that names created or
/// renamed in it survive a power loss.
pub(crate) fn sync_dir(journal: &Path) -> io::Result<()> {
    let dir = match journal.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}
