//! Fault injection for the crash tests: `WEIR_FAULT=<point>` makes the process abort (no
//! destructors, no flushes: as close to `kill -9` as a process can do to itself) when the
//! run reaches that point. Points: `before_sink_commit`, `after_first_sink_commit`,
//! `after_sink_commit` (all sinks committed, state not yet).

pub struct Fault(Option<String>);

impl Fault {
    pub fn from_env() -> Fault {
        Fault(std::env::var("WEIR_FAULT").ok().filter(|v| !v.is_empty()))
    }

    pub fn at(&self, point: &str) {
        if self.0.as_deref() == Some(point) {
            eprintln!("weir: injected fault at {point}: aborting");
            std::process::abort();
        }
    }
}
