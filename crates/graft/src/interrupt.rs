//! Stopping a long call at its next batch. The caller (a Ctrl-C handler, a server's stop
//! button, a notebook's interrupt) requests it; every long loop of the library checks between
//! batches and returns an error that says what stopped, so nothing half-made is kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{GraftError, Result};

/// A shared stop request; clones see the same request.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Asks every call that holds a clone to stop at its next batch; returns whether it had been
    /// asked already.
    pub fn request(&self) -> bool {
        self.0.swap(true, Ordering::SeqCst)
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Withdraws the request (a front end that runs several calls in one process, such as a
    /// server, before the next call).
    pub fn clear(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Two handles are equal when they are one request (so options that hold one can still be
/// compared).
impl PartialEq for Interrupt {
    fn eq(&self, other: &Interrupt) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// `Err(Stopped)` naming `what` when `interrupt` has been requested.
///
/// # Errors
/// The request, as [`GraftError::Stopped`].
pub fn check(interrupt: Option<&Interrupt>, what: &str) -> Result<()> {
    match interrupt {
        Some(interrupt) if interrupt.is_requested() => Err(GraftError::Stopped { what: what.to_owned() }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reaches_every_clone_and_check_names_what_stopped() {
        let interrupt = Interrupt::new();
        let clone = interrupt.clone();
        assert!(check(Some(&clone), "hardening").is_ok());
        assert!(!interrupt.request());
        assert!(interrupt.request(), "the second request knows of the first");
        let error = check(Some(&clone), "hardening").unwrap_err();
        assert!(matches!(&error, GraftError::Stopped { what } if what == "hardening"), "{error}");
        assert!(check(None, "hardening").is_ok());
        clone.clear();
        assert!(check(Some(&interrupt), "hardening").is_ok());
    }
}
