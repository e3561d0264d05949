//! The query pool: where user SQL is parsed, planned and run, away from the caller's runtime.
//!
//! A dedicated multi-thread tokio runtime (`[query] threads` workers, each with a stack of
//! `[query] stack_size_mb`, sized for `[query] max_nesting`) runs every statement of
//! [`crate::History::sql`], so a heavy query never occupies the threads that serve health,
//! readiness, metrics, ingest and decisions, and DataFusion's recursion has the stack it needs.
//! At most `[query] max_concurrent` statements run at once; up to `[query] queue_length` more
//! wait for a slot (no longer than the query time limit); past that a statement is refused at
//! once with [`QueryError::Busy`] (503 with `Retry-After` over HTTP).
//!
//! Input: futures to run. Output: their results. State: the runtime, the slots, the queue count.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::QueryError;

/// Seconds a refused client is told to wait before trying again.
const RETRY_AFTER_S: u64 = 1;

/// The query threads and their admission.
pub(crate) struct QueryPool {
    /// `Some` until dropped (shut down in the background, so a pool may be dropped anywhere).
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue_length: usize,
}

impl std::fmt::Debug for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryPool")
            .field("available", &self.slots.available_permits())
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish()
    }
}

/// Aborts the task when the caller stops waiting (a client that went away).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Takes a place in the queue back when the waiter leaves, however it leaves.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl QueryPool {
    /// Starts `threads` query threads with `stack_mb` MiB of stack each.
    pub(crate) fn new(
        threads: usize,
        stack_mb: usize,
        max_concurrent: usize,
        queue_length: usize,
    ) -> Result<QueryPool, QueryError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("vigil-query")
            .thread_stack_size(stack_mb.max(2) << 20)
            .enable_all()
            .build()
            .map_err(|e| QueryError::Execution(format!("starting the query threads: {e}")))?;
        let handle = runtime.handle().clone();
        Ok(QueryPool {
            runtime: Some(runtime),
            handle,
            slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
            waiting: AtomicUsize::new(0),
            queue_length,
        })
    }

    /// Runs `work` on the query threads once a slot is free. Waits at most `wait` in the queue;
    /// a full queue, or no slot within `wait`, is [`QueryError::Busy`]. Dropping the returned
    /// future cancels the work.
    pub(crate) async fn run<F, T>(&self, wait: Duration, work: F) -> Result<T, QueryError>
    where
        F: Future<Output = Result<T, QueryError>> + Send + 'static,
        T: Send + 'static,
    {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_length {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(self.busy());
                }
                let _waiting = Waiting(&self.waiting);
                match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => return Err(self.busy()),
                }
            }
        };
        let mut task = AbortOnDrop(self.handle.spawn(async move {
            let _slot = permit;
            work.await
        }));
        match (&mut task.0).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(QueryError::Execution("the query failed (an internal panic, logged)".into())),
            Err(e) => Err(QueryError::Execution(format!("the query was cancelled: {e}"))),
        }
    }

    fn busy(&self) -> QueryError {
        QueryError::Busy { retry_after_s: RETRY_AFTER_S }
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
