//! Sync files: a detached full sync written as JSON lines (header, batches, end;
//! docs/connector-sync-format.md), and reading one back for upload.

use super::EntraConfig;
use latchkey_entra::sync::SyncKind;
use latchkey_entra::sync::SyncOptions;
use latchkey_entra::sync::detached::{
    self, Batch, End, FORMAT_VERSION, Header, Line, LogLine, Record, Recorder,
};
use serde::Serialize;
use serde_json::Value;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::sync::mpsc;
use uuid::Uuid;

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What a written sync file holds.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub file: PathBuf,
    pub batches: u64,
    pub stats: Value,
    pub warnings: Vec<String>,
}

/// Runs a full sync into `path` (replaced only when complete: written to `path.partial` and
/// renamed). `on_log` sees the sync's log lines as they come; `stop` ends it early.
pub async fn sync_to_file_with(
    entra: &EntraConfig,
    path: &Path,
    stop: Arc<AtomicBool>,
    mut on_log: impl FnMut(LogLine) + Send,
) -> anyhow::Result<Written> {
    let conn = super::connect(entra).await?;
    let tenant_id = super::tenant_guid(&conn, &entra.settings.auth.tenant_id).await;
    let partial = path.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", partial.display()))?;
    let mut out = BufWriter::new(file);
    let header = Line::Header(Header {
        format: FORMAT_VERSION,
        kind: SyncKind::Full,
        tenant_id,
        graph_domain: entra.settings.graph_domain.clone(),
        started_at: now(),
        connector_version: env!("CARGO_PKG_VERSION").to_string(),
    });
    write_line(&mut out, &header)?;
    let (tx, mut rx) = mpsc::channel::<Record>(64);
    let recorder = Recorder::new(tx, stop);
    let settings = entra.settings.clone();
    let sync = async move {
        let r = detached::run(
            conn.graph.clone(),
            settings,
            SyncOptions::default(),
            &recorder,
        )
        .await;
        drop(recorder);
        r
    };
    let mut seq = 0u64;
    let consume = async {
        while let Some(record) = rx.recv().await {
            match record {
                Record::Batch(mut b) => {
                    b.seq = seq;
                    seq += 1;
                    write_line(&mut out, &Line::Batch(b))?;
                }
                Record::Log(l) => on_log(l),
                Record::Progress(_) => {}
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    let (outcome, written) = tokio::join!(sync, consume);
    written?;
    let outcome = outcome.map_err(anyhow::Error::new)?;
    write_line(
        &mut out,
        &Line::End(End {
            batches: seq,
            stats: outcome.stats.clone(),
            warnings: outcome.warnings.clone(),
            unread: outcome.unread,
            finished_at: now(),
        }),
    )?;
    out.flush()?;
    out.into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", partial.display()))?
        .sync_all()?;
    std::fs::rename(&partial, path)
        .map_err(|e| anyhow::anyhow!("cannot move the sync to {}: {e}", path.display()))?;
    Ok(Written {
        file: path.to_path_buf(),
        batches: seq,
        stats: outcome.stats,
        warnings: outcome.warnings,
    })
}

pub async fn sync_to_file(
    entra: &EntraConfig,
    path: &Path,
    on_log: impl FnMut(LogLine) + Send,
) -> anyhow::Result<Written> {
    sync_to_file_with(entra, path, Arc::new(AtomicBool::new(false)), on_log).await
}

fn write_line(out: &mut impl Write, line: &Line) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Where service mode spools attempt `attempt` of sync task `task` while it uploads:
/// `latchkey-sync-{task}-{attempt}.jsonl` in `dir` (`.partial` while it is written).
pub fn task_path(dir: &Path, task: Uuid, attempt: i32) -> PathBuf {
    dir.join(format!("latchkey-sync-{task}-{attempt}.jsonl"))
}

/// Removes the spool files (complete or `.partial`) that earlier attempts of sync task `task`
/// left in `dir`: an attempt removes its own file when it ends, but not when the connector
/// crashed or was killed during it; the task's next attempt starts from scratch, so they are
/// of no use. Answers how many were removed.
pub fn remove_earlier_attempts(dir: &Path, task: Uuid, attempt: i32) -> usize {
    let prefix = format!("latchkey-sync-{task}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let earlier = rest
            .strip_suffix(".jsonl")
            .or_else(|| rest.strip_suffix(".partial"))
            .and_then(|n| n.parse::<i32>().ok())
            .is_some_and(|n| n < attempt);
        if earlier && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// A complete sync file, checked: its header, its end, and where to read its batches.
pub struct SyncFile {
    pub path: PathBuf,
    pub header: Header,
    pub end: End,
}

/// Reads a sync file's header and end, checking that every batch is there in order.
pub fn open(path: &Path) -> anyhow::Result<SyncFile> {
    let bad =
        |why: String| anyhow::anyhow!("{} is not a complete sync file: {why}", path.display());
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut header = None;
    let mut end = None;
    let mut batches = 0u64;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line =
            serde_json::from_str(&line).map_err(|e| bad(format!("line {}: {e}", n + 1)))?;
        match parsed {
            Line::Header(h) if n == 0 => header = Some(h),
            Line::Batch(b) if header.is_some() && end.is_none() => {
                if b.seq != batches {
                    return Err(bad(format!("batch {} where {batches} was expected", b.seq)));
                }
                batches += 1;
            }
            Line::End(e) if header.is_some() && end.is_none() => end = Some(e),
            _ => return Err(bad(format!("unexpected line {}", n + 1))),
        }
    }
    let header = header.ok_or_else(|| bad("no header line".into()))?;
    if header.format != FORMAT_VERSION {
        return Err(bad(format!(
            "format {} (this connector reads {FORMAT_VERSION})",
            header.format
        )));
    }
    let end = end.ok_or_else(|| bad("no end line: the sync did not finish".into()))?;
    if end.batches != batches {
        return Err(bad(format!(
            "{batches} batches but the end line says {}",
            end.batches
        )));
    }
    Ok(SyncFile {
        path: path.to_path_buf(),
        header,
        end,
    })
}

impl SyncFile {
    /// The batches from `from` on, in order.
    pub fn batches_from(
        &self,
        from: u64,
    ) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Batch>> + use<>> {
        let file = std::fs::File::open(&self.path)?;
        Ok(BufReader::new(file).lines().filter_map(move |line| {
            let line = match line {
                Ok(l) => l,
                Err(e) => return Some(Err(e.into())),
            };
            match serde_json::from_str::<Line>(&line) {
                Ok(Line::Batch(b)) if b.seq >= from => Some(Ok(b)),
                Ok(_) => None,
                Err(e) => Some(Err(e.into())),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_attempt_removes_what_its_earlier_attempts_left_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("latchkey-spool-test-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let task = Uuid::new_v4();
        let other = Uuid::new_v4();
        let touch = |p: PathBuf| {
            std::fs::write(&p, b"{}\n").unwrap();
            p
        };
        // What attempts 1 and 2 left when the connector crashed (complete and partial).
        let first = touch(task_path(&dir, task, 1));
        let second = touch(task_path(&dir, task, 2).with_extension("partial"));
        // The current attempt's, another task's, and someone else's file stay.
        let current = touch(task_path(&dir, task, 3));
        let others = touch(task_path(&dir, other, 1));
        let unrelated = touch(dir.join(format!("latchkey-sync-{task}-notes.txt")));

        assert_eq!(remove_earlier_attempts(&dir, task, 3), 2);
        assert!(!first.exists());
        assert!(!second.exists());
        for kept in [&current, &others, &unrelated] {
            assert!(kept.exists(), "{}", kept.display());
        }
        assert_eq!(remove_earlier_attempts(&dir, task, 3), 0);
        assert_eq!(
            remove_earlier_attempts(&dir.join("missing"), task, 3),
            0,
            "a spool directory that is not there is not an error"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
