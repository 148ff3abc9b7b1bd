//! A private PostgreSQL cluster for `latchkey demo` on machines where none is running:
//! initialised once under `./.latchkey/postgres`, started on a free loopback port, stopped
//! when the demo stops.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LocalPostgres {
    data_dir: PathBuf,
    pub url: String,
    run_as_postgres: bool,
    pg_ctl: PathBuf,
}

/// Finds `initdb` and `pg_ctl`: on PATH, or in Debian's versioned directories.
pub fn find_binaries() -> Option<(PathBuf, PathBuf)> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        versions.reverse(); // newest first
        dirs.extend(versions);
    }
    dirs.iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .map(|d| (d.join("initdb"), d.join("pg_ctl")))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

impl LocalPostgres {
    /// Starts (initialising first if needed) the private cluster.
    pub fn start(base: &Path) -> anyhow::Result<Self> {
        let Some((initdb, pg_ctl)) = find_binaries() else {
            bail!("initdb and pg_ctl were not found")
        };
        std::fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
        let base = base.canonicalize()?;
        let data_dir = base.join("postgres");
        // PostgreSQL refuses to run as root, so as root the cluster belongs to `postgres`.
        let run_as_postgres = is_root();
        let run = |program: &Path, args: &[&str]| -> anyhow::Result<std::process::Output> {
            let mut cmd = if run_as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            cmd.args(args)
                .output()
                .with_context(|| format!("running {}", program.display()))
        };
        if !data_dir.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&data_dir)?;
            if run_as_postgres {
                let status = Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&data_dir)
                    .status()?;
                if !status.success() {
                    bail!("could not hand {} to the postgres user", data_dir.display());
                }
            }
            eprintln!(
                "Initialising a private PostgreSQL cluster in {} ...",
                data_dir.display()
            );
            let out = run(
                &initdb,
                &[
                    "-D",
                    path_str(&data_dir)?,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            )?;
            if !out.status.success() {
                bail!(
                    "initdb failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        let port = free_port()?;
        let log = data_dir.join("server.log");
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            path_str(&data_dir)?
        );
        let out = run(
            &pg_ctl,
            &[
                "-D",
                path_str(&data_dir)?,
                "-l",
                path_str(&log)?,
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        if !out.status.success() {
            bail!(
                "the private PostgreSQL did not start: {} (see {})",
                String::from_utf8_lossy(&out.stderr).trim(),
                log.display()
            );
        }
        eprintln!(
            "Started a private PostgreSQL on 127.0.0.1:{port} (data in {}).",
            data_dir.display()
        );
        Ok(Self {
            data_dir,
            url: format!("postgres://postgres@127.0.0.1:{port}/latchkey"),
            run_as_postgres,
            pg_ctl,
        })
    }
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("the path is not valid UTF-8")
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let Ok(dir) = path_str(&self.data_dir) else {
            return;
        };
        let mut cmd = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&self.pg_ctl);
            c
        } else {
            Command::new(&self.pg_ctl)
        };
        let _ = cmd.args(["-D", dir, "-m", "fast", "-w", "stop"]).output();
    }
}
