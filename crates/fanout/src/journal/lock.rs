//! The journal's lock: one run at a time.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::Error;

/// Opens (creating) the journal for reading and appending, and takes an
/// exclusive `flock` on it, without waiting, for as long as the file stays
/// open.
///
/// Two runs appending to one journal would each skip what the other
/// records; the lock also proves to the next run that the process of any
/// earlier run is gone. The kernel drops it when the process dies, by
/// `SIGKILL` too. The file is opened close-on-exec (as `std` opens every
/// file), so child processes never inherit the lock. `flock` locks an open
/// file description, so a second open in the same process is refused too.
pub(crate) fn open_locked(path: &Path) -> Result<File, Error> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(Error::io(path, "open journal"))?;
    // SAFETY: flock on a file descriptor this function owns; no memory is
    // involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            return Err(Error::Locked {
                path: path.to_owned(),
            });
        }
        return Err(Error::io(path, "lock journal")(err));
    }
    Ok(file)
}
