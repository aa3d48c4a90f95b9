//! A Redis server for one test: started on a free loopback port in a
//! directory of its own, stopped by pid.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`, killed (by pid) when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    password: Option<String>,
}

/// Whether `redis-server` can be run here. In CI (`CI` set) its absence is
/// an error, not a skip: the CI script installs it.
pub fn available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is not installed, and CI must run the Redis tests (apt-get install redis-server)"
        );
        eprintln!("note: redis-server is not installed; skipping the Redis tests (apt-get install redis-server)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl RedisServer {
    /// Starts a server with `extra` settings (for example `--appendonly
    /// yes`), in a new temporary directory under `dir`.
    ///
    /// # Panics
    /// If it does not answer within ten seconds.
    pub fn start(dir: &Path, extra: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir: dir.to_owned(),
            args: extra.iter().map(|s| (*s).to_owned()).collect(),
            password: extra
                .windows(2)
                .find(|w| w[0] == "--requirepass")
                .map(|w| w[1].to_owned()),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answers `PING` (after `AUTH` if it has a
    /// password).
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut cmd = String::new();
        if let Some(p) = &self.password {
            cmd.push_str(&format!("AUTH {p}\r\n"));
        }
        cmd.push_str("PING\r\n");
        if s.write_all(cmd.as_bytes()).is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if got.windows(5).any(|w| w == b"+PONG") {
                return true;
            }
        }
        false
    }

    /// `redis://127.0.0.1:<port>` (with the password, if any).
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server with SIGKILL (no chance to save anything) and
    /// starts it again on the same port and directory.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
