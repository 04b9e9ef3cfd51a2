//! Group commit: requests queued by many callers are committed in batches
//! by one task at a time, so many small writes share one backend write.
//!
//! 1. A caller queues its request ([`GroupCommit::push`]). If no committer
//!    runs, that caller leads: it starts one ([`GroupCommit::run`]) in a
//!    task of its own, so that a caller dropping its future (a cancelled
//!    put) never stops a write that others wait on.
//! 2. The committer takes every request queued so far as one batch, in the
//!    order they were queued, commits it, and takes the next batch, until
//!    none is left. Batches are committed one after the other, so a
//!    request is committed after every request queued before it.
//! 3. Each caller waits on a [`Ticket`]; the committer answers each through
//!    the matching [`Reply`], with its own outcome or, when the batch fails,
//!    the batch's error ([`fail_all`]). A committer that stops without
//!    answering (it panicked, or its runtime shut down) leaves its tickets
//!    an internal error, never a hang.
//!
//! The index log (`journal/append.rs`) and each pad's writer slot (`pad_io/writer.rs`)
//! are both built on it.

use std::sync::Mutex;

use tokio::sync::{Notify, oneshot};

use crate::error::{Error, Result};

/// A queue of requests committed in batches by one task at a time.
pub struct GroupCommit<R> {
    /// Protects the queue and the committer flag; held only to push or
    /// take, never across a commit.
    queue: Mutex<Queue<R>>,
    /// Told when a committer stops.
    stopped: Notify,
}

struct Queue<R> {
    waiting: Vec<R>,
    committing: bool,
}

impl<R> Default for GroupCommit<R> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                committing: false,
            }),
            stopped: Notify::new(),
        }
    }
}

impl<R> GroupCommit<R> {
    /// Queues `request` behind every earlier one. `true`: no committer runs,
    /// and the caller must start one with [`Self::run`] (in a task of its
    /// own); `false`: the running committer takes it.
    pub fn push(&self, request: R) -> bool {
        let mut queue = self.queue.lock().expect("group commit queue");
        queue.waiting.push(request);
        !std::mem::replace(&mut queue.committing, true)
    }

    /// Commits batches with `commit` until the queue is empty: each batch
    /// is every request queued since the last, in order. `commit` answers
    /// the batch's requests.
    pub async fn run<F>(&self, mut commit: impl FnMut(Vec<R>) -> F)
    where
        F: Future<Output = ()>,
    {
        let mut running = Running {
            commits: self,
            done: false,
        };
        loop {
            let batch = {
                let mut queue = self.queue.lock().expect("group commit queue");
                if queue.waiting.is_empty() {
                    queue.committing = false;
                    running.done = true;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            commit(batch).await;
        }
    }

    /// Resolves once no committer runs (every request queued before the
    /// call is answered).
    pub async fn idle(&self) {
        loop {
            let stopped = self.stopped.notified();
            if !self.queue.lock().expect("group commit queue").committing {
                return;
            }
            stopped.await;
        }
    }
}

/// A running committer; however it ends, the queue gets a new committer
/// for the next request. Ended by a panic or by its task being dropped, it
/// lets go of the requests still queued, whose tickets then answer an
/// internal error.
struct Running<'a, R> {
    commits: &'a GroupCommit<R>,
    /// The queue was found empty and handed over (under its lock).
    done: bool,
}

impl<R> Drop for Running<'_, R> {
    fn drop(&mut self) {
        if !self.done {
            let stranded = {
                let mut queue = self
                    .commits
                    .queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                queue.committing = false;
                std::mem::take(&mut queue.waiting)
            };
            drop(stranded);
        }
        self.commits.stopped.notify_waiters();
    }
}

/// The committer's side of one request: answers it once.
pub struct Reply<A>(oneshot::Sender<Result<A>>);

/// The caller's side of one request: its answer.
pub struct Ticket<A>(oneshot::Receiver<Result<A>>);

/// A reply and the ticket it answers.
pub fn ticket<A>() -> (Reply<A>, Ticket<A>) {
    let (reply, ticket) = oneshot::channel();
    (Reply(reply), Ticket(ticket))
}

impl<A> Reply<A> {
    /// Answers the request. A caller that stopped waiting (a cancelled
    /// put) is no error: its request was committed or failed all the same.
    pub fn send(self, answer: Result<A>) {
        let _ = self.0.send(answer);
    }
}

impl<A> Ticket<A> {
    /// The answer; an internal error if the committer stopped without one.
    pub async fn answer(self) -> Result<A> {
        self.0.await.unwrap_or_else(|_| {
            Err(Error::internal(
                "a group-commit task stopped without answering",
            ))
        })
    }
}

/// Answers every reply with `error` (a batch that failed as a whole).
pub fn fail_all<A>(replies: impl IntoIterator<Item = Reply<A>>, error: &Error) {
    for reply in replies {
        reply.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Committed batches of numbers, each request answered with its batch's
    /// number; the first commit waits for `release`.
    struct Recorder {
        commits: GroupCommit<(u32, Reply<usize>)>,
        batches: Mutex<Vec<Vec<u32>>>,
        release: tokio::sync::Semaphore,
    }

    impl Recorder {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                commits: GroupCommit::default(),
                batches: Mutex::new(Vec::new()),
                release: tokio::sync::Semaphore::new(0),
            })
        }

        async fn commit(&self, batch: Vec<(u32, Reply<usize>)>) {
            let _permit = self.release.acquire().await.unwrap();
            let mut batches = self.batches.lock().unwrap();
            let number = batches.len();
            batches.push(batch.iter().map(|(value, _)| *value).collect());
            for (value, reply) in batch {
                if value == 13 {
                    reply.send(Err(Error::invalid("thirteen")));
                } else {
                    reply.send(Ok(number));
                }
            }
        }

        fn submit(self: &Arc<Self>, value: u32) -> Ticket<usize> {
            let (reply, ticket) = ticket();
            if self.commits.push((value, reply)) {
                let recorder = Arc::clone(self);
                tokio::spawn(
                    async move { recorder.commits.run(|batch| recorder.commit(batch)).await },
                );
            }
            ticket
        }
    }

    /// Requests queued while a batch commits form the next batch, in the
    /// order they were queued, and each caller gets its own answer.
    #[tokio::test]
    async fn requests_queued_during_a_commit_share_the_next_batch_in_order() {
        let recorder = Recorder::new();
        let first = recorder.submit(1);
        // The committer has taken [1] and waits for the release; these wait.
        tokio::task::yield_now().await;
        let later: Vec<_> = [2, 13, 3, 4].map(|v| recorder.submit(v)).into();
        recorder.release.add_permits(100);
        assert_eq!(first.answer().await.unwrap(), 0);
        let mut answers = Vec::new();
        for ticket in later {
            answers.push(ticket.answer().await.map_err(|e| e.to_string()));
        }
        assert_eq!(
            answers,
            [
                Ok(1),
                Err("invalid input: thirteen".to_string()),
                Ok(1),
                Ok(1)
            ]
        );
        assert_eq!(
            *recorder.batches.lock().unwrap(),
            [vec![1], vec![2, 13, 3, 4]]
        );
        recorder.commits.idle().await;
        // A request after the committer stopped starts a new one.
        let again = recorder.submit(5);
        assert_eq!(again.answer().await.unwrap(), 2);
    }

    /// A dropped caller does not stop the commit the others wait on.
    #[tokio::test]
    async fn a_dropped_ticket_leaves_the_batch_committed() {
        let recorder = Recorder::new();
        drop(recorder.submit(1));
        let kept = recorder.submit(2);
        recorder.release.add_permits(100);
        assert!(kept.answer().await.is_ok());
        recorder.commits.idle().await;
        let committed: Vec<u32> = recorder.batches.lock().unwrap().concat();
        assert_eq!(committed, [1, 2]);
    }

    #[test]
    fn a_failed_batch_answers_every_request_with_its_error() {
        let (replies, tickets): (Vec<_>, Vec<_>) = (0..3).map(|_| ticket::<u8>()).unzip();
        fail_all(replies, &Error::integrity("torn"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for ticket in tickets {
            let answer = runtime.block_on(ticket.answer());
            assert!(matches!(answer, Err(Error::Integrity(m)) if m == "torn"));
        }
    }

    /// A committer that stops without answering (here: it panics) leaves
    /// an internal error to its callers, not a hang, and the queue usable.
    #[tokio::test]
    async fn a_committer_that_stops_without_answering_is_an_internal_error() {
        let commits: Arc<GroupCommit<Reply<()>>> = Arc::default();
        let (reply, answer) = ticket();
        assert!(commits.push(reply));
        let running = Arc::clone(&commits);
        let task = tokio::spawn(async move {
            running
                .run(|_batch| async { panic!("a bug in the commit") })
                .await
        });
        assert!(task.await.is_err());
        assert!(matches!(answer.answer().await, Err(Error::Internal(_))));
        commits.idle().await;
        let (reply, _ticket) = ticket();
        assert!(
            commits.push(reply),
            "the next request leads a new committer"
        );
    }

    /// `idle` waits for the running committer to take and answer every
    /// request queued before it.
    #[tokio::test]
    async fn idle_waits_for_the_queue_to_drain() {
        let recorder = Recorder::new();
        let ticket = recorder.submit(1);
        let idle = {
            let recorder = Arc::clone(&recorder);
            tokio::spawn(async move { recorder.commits.idle().await })
        };
        tokio::task::yield_now().await;
        assert!(!idle.is_finished());
        recorder.release.add_permits(1);
        idle.await.unwrap();
        assert_eq!(ticket.answer().await.unwrap(), 0);
    }
}
