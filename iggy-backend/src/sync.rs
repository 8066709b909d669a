//! Locks the backend's layers share: a poisoned lock is taken all the same (a panic
//! elsewhere must not take the backend down with it), and [`Gate`] serializes async work
//! without a runtime.

use std::sync::{Mutex, MutexGuard, PoisonError};

use event_listener::Event;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A minimal asynchronous lock that needs no runtime.
#[derive(Default)]
pub(crate) struct Gate {
    busy: Mutex<bool>,
    free: Event,
}

pub(crate) struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        *lock(&self.0.busy) = false;
        self.0.free.notify(1);
    }
}

impl Gate {
    pub(crate) async fn enter(&self) -> GateGuard<'_> {
        loop {
            let listener = self.free.listen();
            {
                let mut busy = lock(&self.busy);
                if !*busy {
                    *busy = true;
                    return GateGuard(self);
                }
            }
            listener.await;
        }
    }
}
