use std::process::{Command, Output};

pub fn latchkey() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    // Start from a clean slate: only what each test sets.
    for var in [
        "DATABASE_URL",
        "LATCHKEY_LISTEN",
        "LATCHKEY_PUBLIC_URL",
        "LATCHKEY_MASTER_KEYS",
        "LATCHKEY_LOG_FORMAT",
        "LATCHKEY_DB_STATEMENT_TIMEOUT_SECS",
    ] {
        c.env_remove(var);
    }
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running latchkey")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
