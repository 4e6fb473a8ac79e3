//! The recorder's journal: append-only segment files in `data_dir/journal/`, one JSON
//! line per store operation, made durable with one `fdatasync` per group commit.
//!
//! This is what "recorded before forwarded" waits for. Appending a few hundred bytes to
//! one file and syncing it costs one page write; committing the same records to SQLite
//! with `synchronous = FULL` costs a dozen or more (table and index pages) on every
//! statement. The ingest thread copies journalled records into SQLite afterwards, and a
//! segment is deleted once the database holds all of it durably. After a crash the
//! segments left are replayed into the database at start-up.
//!
//! Segments are preallocated (zero-filled) in 1 MiB steps and written in place, so
//! that a commit's sync flushes the data alone and not the file's size as well: about a
//! quarter less CPU and latency per sync than appending, measured here.
//!
//! A commit that was interrupted leaves at most a torn tail in the newest segment: the
//! pages of its one write may have reached the disk in any order, so the first line
//! that is incomplete or does not parse starts the tail, and everything from there on
//! belongs to that commit or to the zero-filled rest of the file. Nothing in it was
//! acknowledged, so nothing in it was acted on; recovery drops it. A segment that was
//! closed was synced and cut to its length first, so a bad line in one is corruption
//! and stops the start-up with the file and line named.
//!
//! A write or sync that fails while the gateway runs (a full or read-only disk) is the
//! same torn tail, in a process that goes on: the writer never writes to that segment
//! again, but closes it (cut to its last good record) and continues in a new one once
//! the disk takes writes again ([`Journal::rotate`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_store::{EncodedBatch, StoreOp};

/// A segment is closed and a new one started once it reaches this size.
pub(crate) const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Zero-filled space added to a segment ahead of its data at a time.
const PREALLOCATE_BYTES: u64 = 1024 * 1024;
/// What preallocation writes at a time (see [`Journal::write`]).
static ZEROS: [u8; 4 * 1024] = [0; 4 * 1024];

/// Why the journal cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file system refused.
    #[error("recorder journal {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A complete line in the middle of the journal does not parse.
    #[error(
        "recorder journal {path} is corrupt at line {line}: {detail}; move the file aside to start (its records are not in the database)"
    )]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The segment file for number `n`.
pub(crate) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.jsonl"))
}

/// The numbers of the segments in `dir`, ascending.
fn segments(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")) else {
            continue;
        };
        if let Ok(n) = stem.parse::<u64>() {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// A segment left by an earlier run, with its records.
pub(crate) struct Leftover {
    pub(crate) segment: u64,
    pub(crate) ops: Vec<StoreOp>,
}

/// Reads every segment in `dir` (creating `dir` if needed), dropping a torn tail of
/// the newest one.
pub(crate) fn recover(dir: &Path) -> Result<Vec<Leftover>, JournalError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let numbers = segments(dir)?;
    let mut out = Vec::with_capacity(numbers.len());
    for (i, &segment) in numbers.iter().enumerate() {
        let newest = i + 1 == numbers.len();
        let path = segment_path(dir, segment);
        let file = File::open(&path).map_err(io_error(&path))?;
        let mut reader = BufReader::new(file);
        let mut ops = Vec::new();
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(io_error(&path))?;
            if n == 0 {
                break;
            }
            number += 1;
            let parsed = if line.last() == Some(&b'\n') {
                serde_json::from_slice::<StoreOp>(&line).map_err(|e| e.to_string())
            } else {
                Err("the line is incomplete".to_owned())
            };
            match parsed {
                Ok(op) => ops.push(op),
                // An unfinished commit: never acknowledged, so never acted on.
                Err(_) if newest => {
                    if line.iter().any(|b| *b != 0) {
                        tracing::warn!(
                            path = %path.display(),
                            line = number,
                            "dropping the torn tail of the recorder journal (a commit that never completed)"
                        );
                    }
                    break;
                }
                Err(detail) => {
                    return Err(JournalError::Corrupt {
                        path,
                        line: number,
                        detail,
                    });
                }
            }
        }
        out.push(Leftover { segment, ops });
    }
    Ok(out)
}

/// Deletes segment `n` (its records are durable in the database).
pub(crate) fn remove_segment(dir: &Path, n: u64) -> Result<(), JournalError> {
    let path = segment_path(dir, n);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(&path)(e)),
        _ => Ok(()),
    }
}

/// The segment being appended to.
pub(crate) struct Journal {
    dir: PathBuf,
    /// The segment's file name, for errors (built once, not per write).
    path: PathBuf,
    /// Shared with whoever syncs it outside the writer's lock ([`Journal::sync_handle`]).
    file: Arc<File>,
    segment: u64,
    /// Bytes of records written.
    len: u64,
    /// Bytes the file holds (records, then zeros).
    allocated: u64,
    /// Size at which the segment is closed ([`SEGMENT_BYTES`]; smaller in tests).
    limit: u64,
}

impl Journal {
    /// Starts segment `segment` in `dir` (which must exist and not hold it yet).
    pub(crate) fn create(dir: &Path, segment: u64) -> Result<Journal, JournalError> {
        Journal::start(dir, segment, OpenOptions::new().create_new(true))
    }

    /// Opens segment `segment` in `dir` as an empty file, with `how` to create it.
    fn start(dir: &Path, segment: u64, how: &mut OpenOptions) -> Result<Journal, JournalError> {
        let path = segment_path(dir, segment);
        let file = how
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        // The new file's name must survive a crash too, not just its contents.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))?;
        Ok(Journal {
            dir: dir.to_owned(),
            path,
            file: Arc::new(file),
            segment,
            len: 0,
            allocated: 0,
            limit: SEGMENT_BYTES,
        })
    }

    /// Appends `ops` and waits until they are on disk. Returns the number of the
    /// segment just closed when this append filled it (a new one is started).
    #[cfg(test)]
    pub(crate) fn append(&mut self, ops: &[StoreOp]) -> Result<Option<u64>, JournalError> {
        let batch = EncodedBatch::encode(ops.to_vec()).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        self.write(&batch)?;
        let closed = if self.is_full() {
            Some(self.rotate()?)
        } else {
            None
        };
        self.sync()?;
        Ok(closed)
    }

    /// Appends `batch`'s lines to the file, without syncing: from here on they survive
    /// the gateway process dying, not yet the machine. On an error nothing counts as
    /// written, but the file may hold part of the lines after the last record: see
    /// [`Journal::rotate`].
    pub(crate) fn write(&mut self, batch: &EncodedBatch) -> Result<(), JournalError> {
        let text = batch.text().as_bytes();
        let end = self.len + text.len() as u64;
        self.preallocate(end)?;
        self.file
            .write_all_at(text, self.len)
            .map_err(io_error(&self.path))?;
        self.len = end;
        Ok(())
    }

    /// Zero-fills the file ahead of the data up to the next [`PREALLOCATE_BYTES`] step
    /// at or past `end`, unless it already holds that much.
    fn preallocate(&mut self, end: u64) -> Result<(), JournalError> {
        if end <= self.allocated {
            return Ok(());
        }
        // Zeros ahead of the data; the next sync makes the new size durable once, and
        // the following commits overwrite blocks that already exist.
        let target = end.div_ceil(PREALLOCATE_BYTES) * PREALLOCATE_BYTES;
        // In page-sized pieces: the page cache sizes its folios by the write that
        // created them. After one 1 MiB write, every small append on ext4 walked all of
        // the folio's blocks (3.1-3.6 µs per 900-byte append against 1.3 µs after 64 KiB
        // pieces, ~9 µs per `pgbench -S` transaction), and a sync wrote back whole dirty
        // folios: with 64 KiB ones, every commit under TPC-B wrote 64 KiB for a few
        // hundred bytes of records (71 KiB written per transaction by the gateway, 28 KiB
        // with 4 KiB pieces; docs/performance.md).
        let mut at = self.allocated;
        while at < target {
            let piece = usize::try_from(target - at).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
            let zeros = ZEROS.get(..piece).unwrap_or(&ZEROS);
            self.file
                .write_all_at(zeros, at)
                .map_err(io_error(&self.path))?;
            at += zeros.len() as u64;
        }
        // Only now: after a failed attempt the next one starts over from the old size
        // (the zeros it left are harmless, the file holds zeros there anyway).
        self.allocated = target;
        Ok(())
    }

    /// Whether the segment reached its size: time to [`rotate`](Self::rotate).
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.limit
    }

    /// Closes the segment and starts the next one; returns the closed one's number.
    ///
    /// The segment is cut to its records and synced first. Closed segments hold
    /// records only (recovery treats a bad line in one as corruption), and the cut also
    /// drops whatever a failed write left after the last record: the next write must
    /// never land after such a torn line, where recovery would stop reading (a write
    /// shorter than the torn one would even leave the failed commit's complete lines
    /// behind it, records that were never acknowledged and whose chain positions were
    /// given out again). So after any failure the writer continues in a new segment.
    /// Safe to call again after it failed part-way.
    pub(crate) fn rotate(&mut self) -> Result<u64, JournalError> {
        self.file.set_len(self.len).map_err(io_error(&self.path))?;
        self.file.sync_all().map_err(io_error(&self.path))?;
        let closed = self.segment;
        // Replacing, not refusing, an existing file: an earlier attempt that failed
        // after creating it (syncing the folder) wrote nothing to it.
        let mut next = Journal::start(
            &self.dir,
            closed + 1,
            OpenOptions::new().create(true).truncate(true),
        )?;
        next.limit = self.limit;
        *self = next;
        Ok(closed)
    }

    /// Preallocates room for the next records (unless there is some) and syncs: the
    /// probe that the disk takes writes and syncs again after a failure.
    pub(crate) fn reserve(&mut self) -> Result<(), JournalError> {
        self.preallocate(self.len + 1)?;
        self.file.sync_data().map_err(io_error(&self.path))
    }

    /// Waits until everything written so far is on disk (`fdatasync`).
    #[cfg(test)]
    pub(crate) fn sync(&mut self) -> Result<(), JournalError> {
        self.sync_handle().sync()
    }

    /// What syncs the current segment, usable without holding the journal: a sync
    /// through it covers every write made to the journal before the sync started
    /// (writes to a segment closed since then were synced when it closed).
    pub(crate) fn sync_handle(&self) -> SyncHandle {
        SyncHandle {
            file: self.file.clone(),
            path: self.path.clone(),
        }
    }

    /// The segment being appended to.
    pub(crate) fn segment(&self) -> u64 {
        self.segment
    }
}

/// Syncs one segment file ([`Journal::sync_handle`]).
pub(crate) struct SyncHandle {
    file: Arc<File>,
    path: PathBuf,
}

impl SyncHandle {
    /// `fdatasync`.
    pub(crate) fn sync(&self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(io_error(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_model::Timestamp;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "airlock-journal-{name}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    fn end(id: &str) -> StoreOp {
        StoreOp::EndSession {
            id: id.into(),
            at: Timestamp::now(),
        }
    }

    #[test]
    fn appended_records_are_recovered_in_order() {
        let dir = temp_dir("order");
        let mut j = Journal::create(&dir, 1).unwrap();
        j.append(&[end("a"), end("b")]).unwrap();
        j.append(&[end("c")]).unwrap();
        let got = recover(&dir).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].segment, 1);
        let ids: Vec<_> = got[0]
            .ops
            .iter()
            .map(|op| match op {
                StoreOp::EndSession { id, .. } => id.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn records_past_several_preallocations_are_recovered_and_the_zeros_ignored() {
        let dir = temp_dir("prealloc");
        let mut j = Journal::create(&dir, 1).unwrap();
        // ~2.5 MiB of records in ~1 KiB writes: three preallocation rounds, each written
        // in pieces of `ZEROS`.
        let long = "x".repeat(1000);
        for _ in 0..2500 {
            j.write(&EncodedBatch::encode(vec![end(&long)]).unwrap())
                .unwrap();
        }
        let size = fs::metadata(segment_path(&dir, 1)).unwrap().len();
        assert_eq!(size % PREALLOCATE_BYTES, 0, "whole preallocations: {size}");
        assert!(size >= j.len && size - j.len < PREALLOCATE_BYTES);
        let got = recover(&dir).unwrap();
        assert_eq!(got[0].ops.len(), 2500);
        assert!(
            got[0]
                .ops
                .iter()
                .all(|op| matches!(op, StoreOp::EndSession { id, .. } if *id == long))
        );
    }

    #[test]
    fn a_torn_tail_of_the_newest_segment_is_dropped() {
        let dir = temp_dir("torn");
        let mut j = Journal::create(&dir, 7).unwrap();
        j.append(&[end("a")]).unwrap();
        let at = j.len;
        j.file
            .write_all_at(br#"{"op":"end_session","id":"b","#, at)
            .unwrap();
        let got = recover(&dir).unwrap();
        assert_eq!(got[0].ops.len(), 1);
        // A torn line followed by a complete one (the pages of one write reached the
        // disk out of order) is a torn tail too: both belong to the unfinished commit.
        j.file
            .write_all_at(
                b"\0\0\0\n{\"op\":\"end_session\",\"id\":\"c\",\"at\":\"2026-11-26T00:00:00Z\"}\n",
                at,
            )
            .unwrap();
        assert_eq!(recover(&dir).unwrap()[0].ops.len(), 1);
    }

    #[test]
    fn a_bad_line_in_a_closed_segment_is_corruption() {
        let dir = temp_dir("corrupt");
        let mut j = Journal::create(&dir, 1).unwrap();
        j.append(&[end("a")]).unwrap();
        j.file.write_all_at(b"not json\n", j.len).unwrap();
        j.len += 9;
        j.append(&[end("b")]).unwrap();
        drop(j);
        Journal::create(&dir, 2).unwrap();
        let err = recover(&dir).err().unwrap();
        assert!(
            matches!(err, JournalError::Corrupt { line: 2, .. }),
            "{err}"
        );
    }

    fn ids(ops: &[StoreOp]) -> Vec<&str> {
        ops.iter()
            .map(|op| match op {
                StoreOp::EndSession { id, .. } => id.as_str(),
                _ => "?",
            })
            .collect()
    }

    #[test]
    fn after_a_failed_write_the_segment_is_cut_to_its_records_and_a_new_one_continues() {
        let dir = temp_dir("repair");
        let mut j = Journal::create(&dir, 1).unwrap();
        j.append(&[end("a")]).unwrap();
        // What a failed commit of two records may leave: its first line whole, the
        // second torn. Written over in place by a shorter commit, the whole line would
        // have survived as a record nobody acknowledged.
        let failed = EncodedBatch::encode(vec![end("refused-1"), end("refused-2")]).unwrap();
        let text = failed.text().as_bytes();
        j.file.write_all_at(&text[..text.len() - 5], j.len).unwrap();
        assert_eq!(j.rotate().unwrap(), 1);
        j.reserve().unwrap();
        assert_eq!(j.segment(), 2);
        j.append(&[end("b")]).unwrap();
        let got = recover(&dir).expect("the closed segment holds whole records only");
        assert_eq!(got.len(), 2);
        assert_eq!(ids(&got[0].ops), ["a"]);
        assert_eq!(ids(&got[1].ops), ["b"]);
        let first = fs::read(segment_path(&dir, 1)).unwrap();
        assert!(first.ends_with(b"}\n"), "cut right after its last record");
    }

    #[test]
    fn a_rotation_that_failed_after_creating_the_next_file_can_be_repeated() {
        let dir = temp_dir("rotate-again");
        let mut j = Journal::create(&dir, 1).unwrap();
        j.append(&[end("a")]).unwrap();
        // As if an earlier attempt created segment 2, then failed syncing the folder.
        fs::write(segment_path(&dir, 2), b"").unwrap();
        assert_eq!(j.rotate().unwrap(), 1);
        j.append(&[end("b")]).unwrap();
        let got = recover(&dir).unwrap();
        assert_eq!(ids(&got[1].ops), ["b"]);
    }

    #[test]
    fn a_full_segment_is_closed_and_the_next_one_started() {
        let dir = temp_dir("rotate");
        let mut j = Journal::create(&dir, 1).unwrap();
        j.limit = 100;
        assert_eq!(j.append(&[end("a")]).unwrap(), None);
        let first = j.len;
        assert_eq!(j.append(&[end("b")]).unwrap(), Some(1));
        assert_eq!(j.segment(), 2);
        assert_eq!(j.append(&[end("c")]).unwrap(), None);
        assert_eq!(
            fs::metadata(segment_path(&dir, 1)).unwrap().len(),
            2 * first,
            "a closed segment is cut to its records"
        );
        assert_eq!(
            fs::metadata(segment_path(&dir, 2)).unwrap().len(),
            PREALLOCATE_BYTES,
            "the open one is preallocated"
        );
        let got = recover(&dir).unwrap();
        assert_eq!(got.iter().map(|l| l.segment).collect::<Vec<_>>(), [1, 2]);
        remove_segment(&dir, 1).unwrap();
        assert_eq!(recover(&dir).unwrap().len(), 1);
    }
}
