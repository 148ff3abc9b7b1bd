//! Process memory settings for processes that run jobs.
//!
//! glibc's allocator gives threads their own arenas (up to eight per core) and keeps what is
//! freed in an arena mapped for that arena's next use. A sync's big pages are allocated on one
//! runtime thread and freed on another, so every arena ends up holding a page's worth: the
//! 100,000-user benchmark measured 254 MB for the sync with glibc's default and 188–203 MB with two
//! arenas, at the same speed (docs/performance.md).

/// Arenas a process keeps unless `MALLOC_ARENA_MAX` says otherwise.
pub const MALLOC_ARENAS: i32 = 2;

/// Limits glibc's allocator to [`MALLOC_ARENAS`] arenas, unless the environment already chose
/// (`MALLOC_ARENA_MAX`, which glibc read at start-up). Call it first thing in `main`. Elsewhere
/// (musl, other systems) it does nothing.
pub fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tuning parameter of the allocator; it is called before
    // the process starts other threads and has no memory-safety preconditions.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}
