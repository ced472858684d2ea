//! Owns what a database failover test does to throwaway servers: a streaming standby of
//! a primary (`pg_basebackup -R`), `kill -9` of a postmaster, `pg_ctl promote`, an old
//! primary brought back as a read-only server, and one-off SQL through `psql`. Uses the
//! parent module's [`PgServer`] internals and the server binaries; nothing else.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use super::{free_port, id_of, PgServer};

/// Server options of a primary that waits for one synchronous standby before it
/// acknowledges a commit.
pub const SYNC_PRIMARY_OPTS: &str = "-c wal_level=replica -c max_wal_senders=5 \
     -c synchronous_standby_names='*' -c synchronous_commit=on";

impl PgServer {
    /// One SQL statement through `psql` on this server's TCP port: its unaligned,
    /// tuples-only output, or why not.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let out = self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-AtX",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`), started on a port of its
    /// own with `extra_opts`; returns once `primary` reports it as a synchronous standby
    /// (when `synchronous_standby_names` asks for one) or streaming.
    pub fn standby_of(primary: &PgServer, extra_opts: &str) -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&data).unwrap();
        std::fs::create_dir(&sock).unwrap();
        if primary.as_postgres {
            use std::os::unix::fs::PermissionsExt;
            let (uid, gid) = (id_of("postgres", "-u"), id_of("postgres", "-g"));
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            for d in [&data, &sock] {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
            }
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let mut server = PgServer {
            dir,
            bin: primary.bin.clone(),
            data,
            port: 0,
            pg_opts: String::new(),
            as_postgres: primary.as_postgres,
        };
        let primary_port = primary.port.to_string();
        server.run_ok(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port,
                "-U",
                "postgres",
                "-D",
                server.data.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        );
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            server.pg_opts = format!(
                "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
                 -c fsync=off -c full_page_writes=off -c max_connections=100 \
                 -c hot_standby=on {extra_opts}",
                server.port,
                sock.display()
            );
            match server.pg_ctl_start() {
                Ok(()) => {
                    primary.wait_replica_streaming();
                    return server;
                }
                Err(e) => last = e,
            }
        }
        panic!("standby pg_ctl start failed: {last}");
    }

    /// Wait (bounded) until a standby streams from this server, synchronously when
    /// this server asks for a synchronous one.
    fn wait_replica_streaming(&self) {
        let started = Instant::now();
        loop {
            let state = self
                .psql("SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'")
                .unwrap_or_default();
            let want_sync = self
                .psql("SHOW synchronous_standby_names")
                .map(|s| !s.is_empty())
                .unwrap_or(false);
            if state
                .lines()
                .any(|s| !want_sync || s == "sync" || s == "quorum")
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the standby did not stream within 30 s (pg_stat_replication: {state:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` of the postmaster, as a machine or process crash would do; returns once
    /// the port refuses connections.
    pub fn kill9(&self) {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("postmaster.pid of a running server");
        let pid = pid_file.lines().next().unwrap_or("").trim().to_owned();
        let out = Command::new("kill")
            .args(["-9", &pid])
            .output()
            .expect("run kill");
        assert!(out.status.success(), "kill -9 {pid}: {out:?}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "port {} still accepts after kill -9",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `pg_ctl promote`, waiting until the server accepts writes.
    pub fn promote(&self) {
        self.run_ok(
            "pg_ctl",
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "promote",
            ],
        );
    }

    /// Bring a killed primary back on its old port as a read-only server (what an HA
    /// manager does with a deposed primary before it rewinds it): `standby.signal`, no
    /// upstream. Retries while the killed postmaster's children still hold its shared
    /// memory.
    pub fn restart_as_stale_standby(&self) {
        let signal = self.data.join("standby.signal");
        std::fs::write(&signal, b"").expect("write standby.signal");
        if self.as_postgres {
            let (uid, gid) = (id_of("postgres", "-u"), id_of("postgres", "-g"));
            std::os::unix::fs::chown(&signal, Some(uid), Some(gid)).unwrap();
        }
        // Without this the server would try the replication source it never had.
        remove_primary_conninfo(&self.data);
        let started = Instant::now();
        loop {
            match self.pg_ctl_start() {
                Ok(()) => break,
                Err(e) => assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the old primary did not start again: {e}"
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // Accepting TCP is not accepting queries: wait for the read-only server to answer.
        let started = Instant::now();
        while self.psql("SELECT 1").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the old primary does not answer queries"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl PgServer {
    /// SIGSTOP (`freeze = true`) or SIGCONT the postmaster and its children: the server
    /// keeps its sockets but answers nothing, like a partition that drops packets.
    pub fn freeze(&self, freeze: bool) {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("postmaster.pid of a running server");
        let pm = pid_file.lines().next().unwrap_or("").trim().to_owned();
        let mut pids = vec![pm.clone()];
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid …: the ppid is the second field after the comm.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid == Some(pm.as_str()) {
                pids.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        let sig = if freeze { "-STOP" } else { "-CONT" };
        for (i, pid) in pids.iter().enumerate() {
            let out = Command::new("kill")
                .args([sig, pid])
                .output()
                .expect("run kill");
            // A child may have exited since /proc was read; the postmaster may not.
            assert!(i > 0 || out.status.success(), "kill {sig} {pid}: {out:?}");
        }
    }
}

fn remove_primary_conninfo(data: &Path) {
    let auto = data.join("postgresql.auto.conf");
    if let Ok(text) = std::fs::read_to_string(&auto) {
        let kept: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("primary_conninfo"))
            .map(|l| format!("{l}\n"))
            .collect();
        let _ = std::fs::write(&auto, kept);
    }
}
