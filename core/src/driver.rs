//! Runtime-neutral glue between a [`Connection`] and a [`Backend`], shared by the runtime
//! adapters so that they only move bytes and sleep.
//!
//! Commands that complete synchronously are fed back at once; the others are kept here as
//! futures that need no particular executor. The adapter polls [`Commands::poll_ready`]
//! alongside its socket and timer, and sleeps no later than [`Commands::poll_timeout`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::backend::{Backend, CommandId, Completion, Execution};
use crate::Connection;

type Pending = Pin<Box<dyn Future<Output = Completion> + Send + 'static>>;

/// The commands of one connection that are still running.
#[derive(Default)]
pub struct Commands {
    pending: Vec<(CommandId, Option<Instant>, Pending)>,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Commands {
    /// Nothing running.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts every command the connection has, feeding synchronous completions straight
    /// back (which may release more commands, started too).
    pub fn start(&mut self, conn: &mut Connection, backend: &dyn Backend, now: Instant) {
        while let Some((id, command)) = conn.poll_command() {
            let deadline = command.deadline();
            match backend.execute(command) {
                Execution::Done(c) => conn.handle_completion(now, id, c),
                Execution::Pending(f) => self.pending.push((id, deadline, f)),
            }
        }
    }

    /// Feeds the connection what `buf` holds and starts the commands that yields, for as
    /// long as that makes progress: commands that complete at once free room for more.
    pub fn pump(
        &mut self,
        conn: &mut Connection,
        backend: &dyn Backend,
        buf: &mut bytes::BytesMut,
        now: Instant,
    ) {
        loop {
            let before = buf.len();
            conn.handle_input(now, buf);
            self.start(conn, backend, now);
            if buf.len() == before || buf.is_empty() {
                break;
            }
        }
    }

    /// When the adapter must wake next for time's sake: the connection's deadline or a
    /// running command's, whichever is first.
    #[must_use]
    pub fn next_deadline(&self, conn: &Connection) -> Option<Instant> {
        match (conn.poll_timeout(), self.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether anything is running.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Polls every running command; ready when at least one completed, with all that did.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Vec<(CommandId, Completion)>> {
        let mut ready = Vec::new();
        self.pending
            .retain_mut(|(id, _, f)| match f.as_mut().poll(cx) {
                Poll::Ready(c) => {
                    ready.push((*id, c));
                    false
                }
                Poll::Pending => true,
            });
        if ready.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(ready)
        }
    }

    /// The earliest deadline of a running command.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().filter_map(|(_, d, _)| *d).min()
    }

    /// Gives up on commands past their deadline (watches), telling the connection.
    pub fn handle_timeout(&mut self, conn: &mut Connection, now: Instant) {
        let mut expired = Vec::new();
        self.pending.retain(|(id, d, _)| {
            let keep = d.is_none_or(|d| d > now);
            if !keep {
                expired.push(*id);
            }
            keep
        });
        for id in expired {
            conn.handle_completion(now, id, Completion::Watch);
        }
    }

    /// Feeds completions to the connection.
    pub fn complete(
        conn: &mut Connection,
        now: Instant,
        ready: impl IntoIterator<Item = (CommandId, Completion)>,
    ) {
        for (id, c) in ready {
            conn.handle_completion(now, id, c);
        }
    }
}
