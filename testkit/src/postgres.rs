//! A throwaway PostgreSQL server for tests: `initdb` + `pg_ctl` in a temp dir, on a free
//! port of 127.0.0.1, trust auth, stopped (immediate mode) when dropped.
//!
//! PostgreSQL refuses to run as root; CI runs as root, so then the data dir belongs to the
//! `postgres` system user (created by the server package) and the binaries run through
//! `runuser -u postgres --`. Missing binaries fail the test with how to install them.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// A running server; stopped on drop.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// The server options given to `pg_ctl start`.
    pg_opts: String,
    /// Run the binaries as the `postgres` user (we are root).
    as_postgres: bool,
}

const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl) not found: install \
    postgresql (e.g. `apt-get install -y postgresql`; `bash scripts/test` does it)";

/// The directory holding `initdb` and `pg_ctl`: the newest /usr/lib/postgresql/<v>/bin,
/// else the PATH.
fn server_bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let initdb = dir.join("initdb");
        if initdb.exists() {
            // /usr/local/bin/initdb may be a symlink into the versioned dir, where
            // pg_ctl lives too.
            let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
            let real_dir = real.parent().map(Path::to_path_buf).unwrap_or(dir.clone());
            for d in [real_dir, dir] {
                if d.join("pg_ctl").exists() {
                    return d;
                }
            }
        }
    }
    panic!("{INSTALL_HINT}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn id_of(user: &str, flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, user])
        .output()
        .expect("run id");
    assert!(
        out.status.success(),
        "running as root needs the `{user}` system user (created by the postgresql package): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    /// Create a cluster and start it; panics (failing the test) when that is impossible.
    pub fn start() -> PgServer {
        PgServer::start_with("")
    }

    /// [`PgServer::start`] with more server options (`-c name=value …`).
    pub fn start_with(extra_opts: &str) -> PgServer {
        let bin = server_bin_dir();
        let as_postgres = is_root();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&data).unwrap();
        std::fs::create_dir(&sock).unwrap();
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            let (uid, gid) = (id_of("postgres", "-u"), id_of("postgres", "-g"));
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            for d in [&data, &sock] {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
            }
        }
        let mut server = PgServer {
            dir,
            bin,
            data,
            port: 0,
            pg_opts: String::new(),
            as_postgres,
        };
        server.run_ok(
            "initdb",
            &[
                "-D",
                server.data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        // The port is free when we look; another process may take it before the server
        // binds it, so try a few.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            server.pg_opts = format!(
                "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
                 -c fsync=off -c full_page_writes=off \
                 -c max_connections=100 {extra_opts}",
                server.port,
                sock.display()
            );
            match server.pg_ctl_start() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("pg_ctl start failed: {last}");
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let log = self.dir.path().join("sock").join("server.log");
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &self.pg_opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        if out.status.success() {
            self.wait_accepting();
            return Ok(());
        }
        Err(format!(
            "{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        ))
    }

    /// Start the server again after [`PgServer::stop`], on the same port and data.
    pub fn restart(&self) {
        if let Err(e) = self.pg_ctl_start() {
            panic!("pg_ctl start (again) failed: {e}");
        }
    }

    /// The connection URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop the server now (immediate mode, like a crash).
    pub fn stop(&self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    fn wait_accepting(&self) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "PostgreSQL did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        c.current_dir(self.dir.path()).stdin(Stdio::null());
        c
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        self.command(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e} ({INSTALL_HINT})"))
    }

    fn run_ok(&self, tool: &str, args: &[&str]) {
        let out = self.run(tool, args);
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub mod replica;

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
