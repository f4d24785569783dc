//! Start writing a load's pages to disk while it runs, so its commit does not wait for them,
//! and drop the WAL's pages from memory as the checkpoint is done with them.
//!
//! A load is one transaction, so its whole WAL is synced at the commit and then copied into the
//! database by the checkpoint, which syncs that too: ~1 GB of writes for the 10 M-row bench,
//! done after the last batch while the rest of the run waits. A thread asks the kernel, every
//! [`PERIOD`], to start writing back what is dirty in both files (`sync_file_range` with
//! `SYNC_FILE_RANGE_WRITE`: it starts the writes and waits for none), so the commit's syncs
//! find most pages already on disk. It changes nothing about what SQLite syncs, or when:
//! durability stays SQLite's.
//!
//! Once the commit begins ([`Writeback::checkpoint_begins`]), the thread also drops from the
//! page cache the part of the WAL the checkpoint has copied (`POSIX_FADV_DONTNEED`; the WAL is
//! synced by then, so only clean copies of what is on disk go), on the core the checkpoint
//! leaves idle. Otherwise SQLite's deletion of the WAL when the connection closes frees them
//! all at once, after the checkpoint: for the bench's 600 MB the deletion took 0.14 s, now
//! 0.08 s (what is left is the disk discarding the freed blocks). The checkpoint copies pages in
//! ascending order and the database file grows with each new one, so its size tells how far
//! it got; a load's new pages went into the WAL in about that order. A page dropped before
//! the checkpoint read it is read again from disk: slower, never wrong.
//!
//! Elsewhere than on Linux it does nothing.

use std::path::Path;

/// How often dirty pages are handed to the disk.
#[cfg(target_os = "linux")]
const PERIOD: std::time::Duration = std::time::Duration::from_millis(50);
/// How often the checkpoint's progress is read while it runs.
#[cfg(target_os = "linux")]
const CHECKPOINT_PERIOD: std::time::Duration = std::time::Duration::from_millis(5);
/// WAL frames kept behind the checkpoint's position (pages the load wrote out of order).
#[cfg(target_os = "linux")]
const SLACK_FRAMES: u64 = 64;

/// Runs for as long as it lives (it belongs to the load): dropping it drops the sender,
/// which ends the thread's wait (the thread is not joined: it has at most one round left).
pub struct Writeback {
    #[cfg(target_os = "linux")]
    checkpoint: std::sync::mpsc::Sender<()>,
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
        let (checkpoint, begins) = channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("sqlite-writeback".into())
            .spawn(move || {
                let mut files: [Option<std::fs::File>; 2] = [None, None];
                let mut copied: Option<Copied> = None;
                loop {
                    let period = match copied {
                        Some(_) => CHECKPOINT_PERIOD,
                        None => PERIOD,
                    };
                    let begun = match begins.recv_timeout(period) {
                        Err(RecvTimeoutError::Disconnected) => return,
                        Ok(()) => true,
                        Err(RecvTimeoutError::Timeout) => false,
                    };
                    for (file, path) in files.iter_mut().zip(&paths) {
                        if file.is_none() {
                            *file = std::fs::File::open(path).ok();
                        }
                        if let Some(file) = file {
                            start_writing(file);
                        }
                    }
                    if begun {
                        copied = Copied::from(&files);
                    }
                    if let (Some(copied), [Some(db), Some(wal)]) = (&mut copied, &files) {
                        copied.drop_behind(db, wal);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::debug!("no writeback thread: {e}");
        }
        Writeback { checkpoint }
    }

    /// The commit (and with it the checkpoint) is about to begin.
    pub fn checkpoint_begins(&self) {
        // A thread that failed to start is not listening: nothing to tell it.
        let _ = self.checkpoint.send(());
    }
}

#[cfg(target_os = "linux")]
fn start_writing(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call reads no memory of ours. Its result is
    // ignored: this only hurries writes that SQLite's own syncs make durable.
    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// How much of the WAL the checkpoint has copied, read off the database file's growth.
#[cfg(target_os = "linux")]
struct Copied {
    /// The database file's size when the commit began.
    db_before: u64,
    page_size: u64,
    /// WAL bytes already let go of.
    dropped: u64,
}

#[cfg(target_os = "linux")]
impl Copied {
    /// WAL header: 32 bytes, the page size big-endian at offset 8; each frame a 24-byte header
    /// and a page.
    const WAL_HEADER: u64 = 32;
    const FRAME_HEADER: u64 = 24;

    /// `None` when either file is not open or the WAL has no valid header yet.
    fn from(files: &[Option<std::fs::File>; 2]) -> Option<Copied> {
        use std::os::unix::fs::FileExt;
        let [Some(db), Some(wal)] = files else {
            return None;
        };
        let mut header = [0u8; 12];
        wal.read_exact_at(&mut header, 0).ok()?;
        let page_size = u64::from(u32::from_be_bytes(header[8..12].try_into().ok()?));
        let valid = page_size.is_power_of_two() && (512..=65536).contains(&page_size);
        Some(Copied {
            db_before: db.metadata().ok()?.len(),
            page_size: valid.then_some(page_size)?,
            dropped: 0,
        })
    }

    fn drop_behind(&mut self, db: &std::fs::File, wal: &std::fs::File) {
        use std::os::fd::AsRawFd;
        let Ok(size) = db.metadata().map(|m| m.len()) else {
            return;
        };
        let new_pages = size.saturating_sub(self.db_before) / self.page_size;
        let frames = new_pages.saturating_sub(SLACK_FRAMES);
        let end = Self::WAL_HEADER + frames * (Self::FRAME_HEADER + self.page_size);
        if end > self.dropped {
            // From the start each time: the kernel drops only the whole folios (up to 2 MiB)
            // of a range, so the one around the previous end would stay (walking what is
            // already gone is quick).
            // SAFETY: a valid open descriptor; advice reads no memory of ours, and dropping
            // clean cached pages loses nothing. Its result is ignored: best effort.
            unsafe {
                libc::posix_fadvise(wal.as_raw_fd(), 0, end as i64, libc::POSIX_FADV_DONTNEED)
            };
            self.dropped = end;
        }
    }
}

#[cfg(not(target_os = "linux"))]
impl Writeback {
    pub fn start(_db: &Path) -> Writeback {
        Writeback {}
    }

    pub fn checkpoint_begins(&self) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use super::*;

    /// `cachestat` (Linux 6.5+) over `len` bytes from `offset` (0: to the end): pages cached,
    /// dirty, under writeback, evicted, recently evicted.
    fn cachestat(file: &std::fs::File, offset: u64, len: u64) -> [u64; 5] {
        use std::os::fd::AsRawFd;
        let range = [offset, len];
        let mut stat = [0u64; 5];
        // SAFETY: both pointers are to live arrays of the kernel's struct layouts.
        let done =
            unsafe { libc::syscall(451, file.as_raw_fd(), range.as_ptr(), stat.as_mut_ptr(), 0) };
        assert_eq!(done, 0, "cachestat: {}", std::io::Error::last_os_error());
        stat
    }

    /// Pages of `file` in the page cache not yet written to disk.
    fn dirty_pages(file: &std::fs::File) -> u64 {
        let stat = cachestat(file, 0, 0);
        stat[1] + stat[2]
    }

    #[test]
    fn the_wal_leaves_the_page_cache_behind_the_checkpoint() {
        use std::io::{Seek, SeekFrom};

        const PAGE: u64 = 4096;
        const FRAME: u64 = 24 + PAGE;
        // The kernel caches a file in folios of up to 2 MiB, and drops only whole ones.
        const FOLIO: u64 = 2 << 20;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        let mut db_file = std::fs::File::create(&db).unwrap();
        db_file.write_all(&vec![1u8; 10 * PAGE as usize]).unwrap();
        // A WAL of 4000 frames, synced (clean) and cached, as after a commit.
        let mut wal = std::fs::File::create(dir.path().join("w.db-wal")).unwrap();
        let mut header = vec![0u8; 32];
        header[8..12].copy_from_slice(&(PAGE as u32).to_be_bytes());
        wal.write_all(&header).unwrap();
        wal.write_all(&vec![2u8; 4000 * FRAME as usize]).unwrap();
        wal.sync_all().unwrap();
        let len = 32 + 4000 * FRAME;
        let cached = |from: u64, to: u64| cachestat(&wal, from, to - from)[0];
        assert_eq!(cached(0, len), len.div_ceil(PAGE));

        let writeback = Writeback::start(&db);
        writeback.checkpoint_begins();
        std::thread::sleep(PERIOD * 2);
        assert_eq!(cached(0, len), len.div_ceil(PAGE), "nothing copied yet");
        // The checkpoint appends 2000 pages to the database.
        db_file.seek(SeekFrom::End(0)).unwrap();
        db_file.write_all(&vec![3u8; 2000 * PAGE as usize]).unwrap();
        let behind = 32 + (2000 - SLACK_FRAMES) * FRAME;
        let started = Instant::now();
        while cached(0, behind - FOLIO) > 0 {
            assert!(started.elapsed() < Duration::from_secs(5), "still cached");
            std::thread::sleep(CHECKPOINT_PERIOD);
        }
        // What the checkpoint has not reached stays cached.
        let ahead = behind + FOLIO;
        assert_eq!(cached(ahead, len), (len - ahead).div_ceil(PAGE));
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
