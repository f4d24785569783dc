//! Start writing a load's pages to disk while it runs, so its commit does not wait for them.
//!
//! A load is one transaction, so its whole WAL is synced at the commit and then copied into the
//! database by the checkpoint, which syncs that too: ~1 GB of writes for the 10 M-row bench,
//! done after the last batch while the rest of the run waits. A thread asks the kernel, every
//! [`PERIOD`], to start writing back what is dirty in both files (`sync_file_range` with
//! `SYNC_FILE_RANGE_WRITE`: it starts the writes and waits for none), so the commit's syncs
//! find most pages already on disk. It changes nothing about what SQLite syncs, or when:
//! durability stays SQLite's. Elsewhere than on Linux it does nothing.

use std::path::Path;

/// How often dirty pages are handed to the disk.
#[cfg(target_os = "linux")]
const PERIOD: std::time::Duration = std::time::Duration::from_millis(50);

/// Runs for as long as it lives (it belongs to the load): dropping it drops the sender,
/// which ends the thread's wait (the thread is not joined: it has at most one round left).
pub struct Writeback {
    #[cfg(target_os = "linux")]
    _stop: std::sync::mpsc::Sender<()>,
}

#[cfg(target_os = "linux")]
impl Writeback {
    /// Start for the database at `db` and its WAL. Best effort: a file that cannot be opened
    /// (the WAL before SQLite writes it) is tried again on the next round.
    pub fn start(db: &Path) -> Writeback {
        use std::sync::mpsc::{RecvTimeoutError, channel};
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let paths = [db.to_path_buf(), wal.into()];
        let (stop, stopped) = channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("sqlite-writeback".into())
            .spawn(move || {
                let mut files: [Option<std::fs::File>; 2] = [None, None];
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(PERIOD) {
                    for (file, path) in files.iter_mut().zip(&paths) {
                        if file.is_none() {
                            *file = std::fs::File::open(path).ok();
                        }
                        if let Some(file) = file {
                            start_writing(file);
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::debug!("no writeback thread: {e}");
        }
        Writeback { _stop: stop }
    }
}

#[cfg(target_os = "linux")]
fn start_writing(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call reads no memory of ours. Its result is
    // ignored: this only hurries writes that SQLite's own syncs make durable.
    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
impl Writeback {
    pub fn start(_db: &Path) -> Writeback {
        Writeback {}
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use super::*;

    /// Pages of `file` in the page cache not yet written to disk (`cachestat`, Linux 6.5+).
    fn dirty_pages(file: &std::fs::File) -> u64 {
        use std::os::fd::AsRawFd;
        let range = [0u64, 0]; // offset, length (0: to the end)
        let mut stat = [0u64; 5]; // cache, dirty, writeback, evicted, recently evicted
        // SAFETY: both pointers are to live arrays of the kernel's struct layouts.
        let done =
            unsafe { libc::syscall(451, file.as_raw_fd(), range.as_ptr(), stat.as_mut_ptr(), 0) };
        assert_eq!(done, 0, "cachestat: {}", std::io::Error::last_os_error());
        stat[1] + stat[2]
    }

    #[test]
    fn dirty_pages_of_the_database_and_its_wal_go_to_disk_while_the_load_runs() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let mut files = Vec::new();
        for path in [db.clone(), dir.path().join("w.db-wal")] {
            let mut file = std::fs::File::create(path).unwrap();
            file.write_all(&vec![7u8; 8 << 20]).unwrap();
            files.push(file);
        }
        // The kernel keeps such pages dirty for 30 s by default: without the writeback
        // they would still be dirty at the end of the wait below.
        assert!(files.iter().all(|f| dirty_pages(f) > 0));
        let _writeback = Writeback::start(&db);
        let started = Instant::now();
        while files.iter().any(|f| dirty_pages(f) > 0) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "still dirty: {:?}",
                files.iter().map(dirty_pages).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
