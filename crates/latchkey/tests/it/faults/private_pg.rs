//! A private PostgreSQL cluster (initdb + pg_ctl on a free port under the target directory)
//! that a test may restart: the shared server on 5432 is never touched. As root (CI), the
//! cluster runs as the `postgres` user, as `latchkey demo`'s does.

use crate::support::free_port;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct PrivatePg {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
}

/// The newest installed server programs (Debian's /usr/lib/postgresql/N/bin, or PATH).
fn server_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .expect(
            "the PostgreSQL server programs (initdb, pg_ctl) are needed for the restart scenario: \
             apt-get install postgresql (./scripts/test installs it)",
        )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// True when another user (`postgres`) can reach `dir`: every ancestor searchable by others.
fn reachable_by_others(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors()
        .skip(1)
        .all(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

impl PrivatePg {
    pub fn start() -> PrivatePg {
        let bin = server_bin();
        let as_postgres = is_root();
        let name = format!("pg-{}", uuid::Uuid::new_v4().simple());
        // Under the target directory, unless the cluster's user could not reach it there
        // (a checkout under /root) or its socket path would be too long.
        let mut dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&name);
        let socket_fits = dir.as_os_str().len() < 70;
        if !socket_fits || (as_postgres && !reachable_by_others(&dir)) {
            dir = std::env::temp_dir().join(format!("latchkey-{name}"));
        }
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let pg = PrivatePg {
            dir,
            bin,
            as_postgres,
            port: free_port(),
        };
        let data = pg.dir.to_str().unwrap().to_string();
        let out = pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(out.status.success(), "initdb: {}", text(&out));
        let opts = format!(
            "-p {} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off",
            pg.port
        );
        pg.ctl(&["-o", &opts, "start"]);
        pg
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// `pg_ctl restart -m fast`: every connection is cut, running transactions roll back.
    pub fn restart(&self) {
        self.ctl(&["-m", "fast", "restart"]);
    }

    fn ctl(&self, args: &[&str]) {
        let data = self.dir.to_str().unwrap();
        let log = self.dir.join("server.log");
        let mut all = vec!["-D", data, "-l", log.to_str().unwrap(), "-w", "-t", "60"];
        all.extend_from_slice(args);
        let out = self.run("pg_ctl", &all);
        assert!(out.status.success(), "pg_ctl {args:?}: {}", text(&out));
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        // The server log lives in the data directory; pg_ctl must not keep our pipes open.
        cmd.args(args).current_dir(Path::new("/")).output().unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.to_str().unwrap().to_string();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
