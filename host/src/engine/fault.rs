//! Fault injection for the crash tests. `WEIR_FAULT=<point>` makes the process abort (no
//! destructors, no flushes: as close to `kill -9` as a process can do to itself) when the
//! run reaches that point; `<point>@<n>` the n-th time it does. With `WEIR_FAULT_TRACE=1`
//! the run prints `weir: phase <point>` each time it enters a phase, so a test that kills it
//! at a random moment can tell which phase the kill fell in. `WEIR_FAULT_PAUSE=<point>@<n>:<ms>`
//! holds the run there instead (printing `weir: paused at <point>`), so a test can break a
//! server under it at a known moment.
//!
//! Points, in the order a run reaches them: `extract` (a batch was read), `plugin` (a
//! transform call starts), `sink_write` (a batch goes to the sinks), `before_sink_commit`,
//! `after_first_sink_commit`, `after_sink_commit` (all sinks committed, state not yet),
//! `state_committed`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct Fault {
    point: Option<(String, u64)>,
    pause: Option<(String, u64, Duration)>,
    trace: bool,
    reached: AtomicU64,
    paused: AtomicU64,
}

/// `<point>` or `<point>@<n>`: the point and which time it is reached (1 = the first).
fn point_at(text: &str) -> (String, u64) {
    match text.split_once('@') {
        Some((point, n)) => (point.to_string(), n.parse().unwrap_or(1)),
        None => (text.to_string(), 1),
    }
}

impl Fault {
    pub fn from_env() -> Fault {
        let point = std::env::var("WEIR_FAULT")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| point_at(&v));
        let pause = std::env::var("WEIR_FAULT_PAUSE").ok().and_then(|v| {
            let (at, ms) = v.rsplit_once(':')?;
            let (point, n) = point_at(at);
            Some((point, n, Duration::from_millis(ms.parse().ok()?)))
        });
        Fault {
            point,
            pause,
            trace: std::env::var_os("WEIR_FAULT_TRACE").is_some_and(|v| v == "1"),
            reached: AtomicU64::new(0),
            paused: AtomicU64::new(0),
        }
    }

    pub fn at(&self, point: &str) {
        if self.trace {
            eprintln!("weir: phase {point}");
        }
        if let Some((target, n, hold)) = &self.pause
            && target == point
            && self.paused.fetch_add(1, Ordering::Relaxed) + 1 == *n
        {
            eprintln!("weir: paused at {point}");
            std::thread::sleep(*hold);
        }
        let Some((target, n)) = &self.point else {
            return;
        };
        if target == point && self.reached.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            eprintln!("weir: injected fault at {point}: aborting");
            std::process::abort();
        }
    }
}
