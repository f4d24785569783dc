//! A throwaway PostgreSQL server per test: a cluster made once per test binary with `initdb`,
//! copied for each test and started on a free loopback port; stopped and deleted on drop.
//! As root the server runs as the `postgres` user (initdb refuses root). When the server's
//! binaries are missing, `.ci/ensure-postgres` installs them (Debian's `postgresql`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct PgServer {
    dir: tempfile::TempDir,
    pub port: u16,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a server binary, as `postgres` when we are root.
fn pg_command(bin: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin);
        command
    } else {
        Command::new(bin)
    }
}

fn run(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn bindir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = find_bindir() {
            return dir;
        }
        let script = super::workspace_root().join(".ci/ensure-postgres");
        run(
            &mut Command::new(&script),
            "installing PostgreSQL (.ci/ensure-postgres)",
        );
        find_bindir().expect(
            "PostgreSQL server binaries not found after .ci/ensure-postgres; install Debian's \
             `postgresql` package (apt-get install -y postgresql)",
        )
    })
}

fn find_bindir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        dir.join("initdb").is_file().then_some(dir)
    })
}

/// A directory the server user can own.
fn server_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("weir-pg-")
        .tempdir()
        .unwrap();
    if is_root() {
        run(
            Command::new("chown").arg("postgres:").arg(dir.path()),
            "chown to postgres",
        );
    }
    dir
}

/// A freshly initialised cluster that tests copy: made once per machine (kept in the temp
/// directory, keyed by the server version) and renamed into place whole.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let version = bindir()
            .parent()
            .and_then(|p| p.file_name())
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kept = std::env::temp_dir().join(format!("weir-pg-template-{version}"));
        if kept.join("data/PG_VERSION").is_file() {
            return kept;
        }
        let dir = server_dir();
        run(
            pg_command(&bindir().join("initdb"))
                .arg("-D")
                .arg(dir.path().join("data"))
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8"])
                .args(["--locale=C", "--no-sync"]),
            "initdb",
        );
        let made = dir.keep();
        if std::fs::rename(&made, &kept).is_err() {
            // Another test binary got there first.
            let _ = std::fs::remove_dir_all(&made);
        }
        kept
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    pub fn start() -> PgServer {
        let dir = server_dir();
        run(
            Command::new("cp")
                .arg("-a")
                .arg(template().join("data"))
                .arg(dir.path()),
            "copying the template cluster",
        );
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        run(
            pg_command(&bindir().join("pg_ctl"))
                .arg("-D")
                .arg(dir.path().join("data"))
                .arg("-l")
                .arg(dir.path().join("log"))
                .args(["-w", "-t", "60", "-o", &options, "start"]),
            "starting postgres",
        );
        PgServer { dir, port }
    }

    /// Restart the server at once, as a crash would (`pg_ctl restart -m immediate`): every
    /// connection is cut; the server is back on the same port when this returns.
    pub fn restart(&self) {
        run(
            pg_command(&bindir().join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                // The server's output to its log: a server holding our pipe would keep
                // `output()` waiting for ever.
                .arg("-l")
                .arg(self.dir.path().join("log"))
                .args(["-m", "immediate", "-w", "-t", "60", "restart"]),
            "restarting postgres",
        );
    }

    /// A URL for the `postgres` superuser (trust auth: any password is accepted).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL statements (no results) on `database`.
    pub fn execute(&self, database: &str, sql: &str) {
        let url = self.url(database);
        block_on(async move {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        })
    }

    /// Every row of `query` as text columns (NULL as `None`).
    pub fn rows(&self, database: &str, query: &str) -> Vec<Vec<Option<String>>> {
        use sqlx::Row;
        let url = self.url(database);
        block_on(async move {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            let rows = sqlx::query(sqlx::AssertSqlSafe(query.to_string()))
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            rows.iter()
                .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
                .collect()
        })
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = pg_command(&bindir().join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}
