//! Prometheus text: queue figures from the database (any process, e.g. the web's `/metrics`)
//! and this worker process's own counters.

use latchkey_store::jobs::stats;
use latchkey_store::{Store, StoreError};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Finished jobs within this window feed the duration and retry figures.
pub const RECENT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Appends the queue's figures, read from the database, in Prometheus text format:
///
/// - `latchkey_jobs{kind,status}`: queued, running and dead jobs per kind (queue depth);
/// - `latchkey_jobs_dead{kind}`: dead jobs, for alerting;
/// - `latchkey_jobs_lag_seconds{kind}`: age of the oldest due job still queued;
/// - `latchkey_jobs_recent_finished{kind,status}`, `latchkey_job_recent_duration_seconds_sum`
///   and `_max{kind}`, `latchkey_job_recent_retries{kind}`: over the last 15 minutes.
///
/// Owner connection (all organizations).
pub async fn render_prometheus(store: &Store, out: &mut String) -> Result<(), StoreError> {
    let s = stats::queue_stats(store, RECENT_WINDOW).await?;
    out.push_str(
        "# HELP latchkey_jobs Jobs by kind and status (queue depth).\n# TYPE latchkey_jobs gauge\n",
    );
    for d in &s.depth {
        line(
            out,
            "latchkey_jobs",
            &[("kind", &d.kind), ("status", &d.status)],
            d.jobs as f64,
        );
    }
    out.push_str("# HELP latchkey_jobs_dead Jobs that ran out of attempts.\n# TYPE latchkey_jobs_dead gauge\n");
    let mut dead: BTreeMap<&str, i64> = BTreeMap::new();
    for d in &s.depth {
        let e = dead.entry(&d.kind).or_default();
        if d.status == "dead" {
            *e += d.jobs;
        }
    }
    for (kind, n) in dead {
        line(out, "latchkey_jobs_dead", &[("kind", kind)], n as f64);
    }
    out.push_str(
        "# HELP latchkey_jobs_lag_seconds Age of the oldest due job still queued.\n# TYPE latchkey_jobs_lag_seconds gauge\n",
    );
    for l in &s.lag {
        line(
            out,
            "latchkey_jobs_lag_seconds",
            &[("kind", &l.kind)],
            l.seconds,
        );
    }
    out.push_str(
        "# HELP latchkey_jobs_recent_finished Jobs finished in the last 15 minutes.\n# TYPE latchkey_jobs_recent_finished gauge\n",
    );
    for r in &s.recent {
        line(
            out,
            "latchkey_jobs_recent_finished",
            &[("kind", &r.kind), ("status", &r.status)],
            r.jobs as f64,
        );
    }
    let mut by_kind: BTreeMap<&str, (f64, f64, i64)> = BTreeMap::new();
    for r in &s.recent {
        let e = by_kind.entry(&r.kind).or_default();
        e.0 += r.duration_seconds_sum;
        e.1 = e.1.max(r.duration_seconds_max);
        e.2 += r.retries;
    }
    out.push_str("# HELP latchkey_job_recent_duration_seconds_sum Run time of jobs finished in the last 15 minutes.\n# TYPE latchkey_job_recent_duration_seconds_sum gauge\n");
    for (kind, (sum, _, _)) in &by_kind {
        line(
            out,
            "latchkey_job_recent_duration_seconds_sum",
            &[("kind", kind)],
            *sum,
        );
    }
    out.push_str("# HELP latchkey_job_recent_duration_seconds_max Longest run of jobs finished in the last 15 minutes.\n# TYPE latchkey_job_recent_duration_seconds_max gauge\n");
    for (kind, (_, max, _)) in &by_kind {
        line(
            out,
            "latchkey_job_recent_duration_seconds_max",
            &[("kind", kind)],
            *max,
        );
    }
    out.push_str("# HELP latchkey_job_recent_retries Retries of jobs finished in the last 15 minutes.\n# TYPE latchkey_job_recent_retries gauge\n");
    for (kind, (_, _, retries)) in &by_kind {
        line(
            out,
            "latchkey_job_recent_retries",
            &[("kind", kind)],
            *retries as f64,
        );
    }
    Ok(())
}

fn line(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{k}=\"{v}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// How a job attempt ended, as this worker saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Succeeded,
    Failed,
    Retried,
    Dead,
    Cancelled,
    /// Handed back to the queue at shutdown.
    Released,
    /// Another worker owns the job now; nothing was recorded.
    Lost,
}

impl Outcome {
    fn as_str(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Retried => "retried",
            Outcome::Dead => "dead",
            Outcome::Cancelled => "cancelled",
            Outcome::Released => "released",
            Outcome::Lost => "lost",
        }
    }
}

const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

#[derive(Default)]
struct KindCounters {
    started: u64,
    outcomes: BTreeMap<Outcome, u64>,
    dead_reaped: u64,
    buckets: [u64; BUCKETS.len()],
    duration_sum: f64,
    duration_count: u64,
}

/// This process's counters, by job kind. Rendered with [`Metrics::render`].
#[derive(Default)]
pub struct Metrics {
    kinds: Mutex<BTreeMap<String, KindCounters>>,
    released: Mutex<u64>,
}

impl Metrics {
    pub(crate) fn started(&self, kind: &str) {
        self.kinds
            .lock()
            .unwrap()
            .entry(kind.to_string())
            .or_default()
            .started += 1;
    }

    pub(crate) fn finished(&self, kind: &str, outcome: Outcome, took: Duration) {
        let mut kinds = self.kinds.lock().unwrap();
        let k = kinds.entry(kind.to_string()).or_default();
        *k.outcomes.entry(outcome).or_default() += 1;
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                k.buckets[i] += 1;
            }
        }
        k.duration_sum += secs;
        k.duration_count += 1;
    }

    /// A job another (dead) worker was running, buried by this worker's reaper.
    pub(crate) fn dead(&self, kind: &str) {
        self.kinds
            .lock()
            .unwrap()
            .entry(kind.to_string())
            .or_default()
            .dead_reaped += 1;
    }

    pub(crate) fn released(&self, n: u64) {
        *self.released.lock().unwrap() += n;
    }

    /// Jobs this process finished with `outcome`, all kinds together.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.kinds
            .lock()
            .unwrap()
            .values()
            .map(|k| k.outcomes.get(&outcome).copied().unwrap_or(0))
            .sum()
    }

    /// Appends this process's counters in Prometheus text format:
    /// `latchkey_worker_jobs_started_total{kind}`, `latchkey_worker_jobs_finished_total{kind,outcome}`,
    /// `latchkey_worker_job_retries_total{kind}`, `latchkey_worker_jobs_dead_total{kind}`,
    /// `latchkey_worker_job_duration_seconds{kind}` (histogram).
    pub fn render(&self, out: &mut String) {
        let kinds = self.kinds.lock().unwrap();
        out.push_str("# HELP latchkey_worker_jobs_started_total Job attempts this worker started.\n# TYPE latchkey_worker_jobs_started_total counter\n");
        for (kind, k) in kinds.iter() {
            line(
                out,
                "latchkey_worker_jobs_started_total",
                &[("kind", kind)],
                k.started as f64,
            );
        }
        out.push_str("# HELP latchkey_worker_jobs_finished_total Job attempts this worker finished, by outcome.\n# TYPE latchkey_worker_jobs_finished_total counter\n");
        for (kind, k) in kinds.iter() {
            for (o, n) in &k.outcomes {
                line(
                    out,
                    "latchkey_worker_jobs_finished_total",
                    &[("kind", kind), ("outcome", o.as_str())],
                    *n as f64,
                );
            }
        }
        out.push_str("# HELP latchkey_worker_job_retries_total Transient failures this worker scheduled for retry.\n# TYPE latchkey_worker_job_retries_total counter\n");
        for (kind, k) in kinds.iter() {
            let n = k.outcomes.get(&Outcome::Retried).copied().unwrap_or(0);
            line(
                out,
                "latchkey_worker_job_retries_total",
                &[("kind", kind)],
                n as f64,
            );
        }
        out.push_str("# HELP latchkey_worker_jobs_dead_total Jobs this worker buried as dead.\n# TYPE latchkey_worker_jobs_dead_total counter\n");
        for (kind, k) in kinds.iter() {
            let n = k.outcomes.get(&Outcome::Dead).copied().unwrap_or(0) + k.dead_reaped;
            line(
                out,
                "latchkey_worker_jobs_dead_total",
                &[("kind", kind)],
                n as f64,
            );
        }
        out.push_str("# HELP latchkey_worker_job_duration_seconds Run time of job attempts.\n# TYPE latchkey_worker_job_duration_seconds histogram\n");
        for (kind, k) in kinds.iter() {
            for (i, le) in BUCKETS.iter().enumerate() {
                let le = le.to_string();
                line(
                    out,
                    "latchkey_worker_job_duration_seconds_bucket",
                    &[("kind", kind), ("le", &le)],
                    k.buckets[i] as f64,
                );
            }
            line(
                out,
                "latchkey_worker_job_duration_seconds_bucket",
                &[("kind", kind), ("le", "+Inf")],
                k.duration_count as f64,
            );
            line(
                out,
                "latchkey_worker_job_duration_seconds_sum",
                &[("kind", kind)],
                k.duration_sum,
            );
            line(
                out,
                "latchkey_worker_job_duration_seconds_count",
                &[("kind", kind)],
                k.duration_count as f64,
            );
        }
        out.push_str("# HELP latchkey_worker_jobs_released_total Jobs handed back to the queue at shutdown.\n# TYPE latchkey_worker_jobs_released_total counter\n");
        line(
            out,
            "latchkey_worker_jobs_released_total",
            &[],
            *self.released.lock().unwrap() as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_escapes_labels() {
        let m = Metrics::default();
        m.started("a\"b");
        m.finished("a\"b", Outcome::Succeeded, Duration::from_millis(20));
        m.finished("a\"b", Outcome::Retried, Duration::from_millis(2));
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("latchkey_worker_jobs_started_total{kind=\"a\\\"b\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("latchkey_worker_job_retries_total{kind=\"a\\\"b\"} 1\n"));
        assert!(out.contains(
            "latchkey_worker_job_duration_seconds_bucket{kind=\"a\\\"b\",le=\"0.01\"} 1\n"
        ));
        assert!(out.contains("latchkey_worker_job_duration_seconds_count{kind=\"a\\\"b\"} 2\n"));
        assert_eq!(m.count(Outcome::Succeeded), 1);
    }
}
