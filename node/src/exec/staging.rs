//! The staging directory: per deal a data file `<uuid>.data` and, beside it while the
//! data comes in, the piece-commitment state `<uuid>.commp` (see core's `CommP::snapshot`).
//!
//! The snapshot is only written after the data up to its offset is on disk (fsync), and
//! atomically (temporary file, fsync, rename, fsync of the directory), so after a crash
//! the snapshot never claims bytes the data file lacks. Resuming truncates the data to
//! the snapshot's offset (anything after it was never committed) and continues there.
//!
//! Everything here blocks: call it through the runtime's blocking pool.
use std::{
    fs::{self, File, OpenOptions},
    io::{self, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use dealport_core::{commp::CommP, wire::DealUuid};

#[derive(Debug, Clone)]
pub struct Staging {
    dir: PathBuf,
}

/// A data file opened for appending and the commitment state matching its length.
#[derive(Debug)]
pub struct Resumed {
    pub file: File,
    pub commp: CommP,
}

impl Staging {
    pub fn new(dir: PathBuf) -> Staging {
        Staging { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The deal's data file (complete once the deal is `Transferred`).
    pub fn data_path(&self, uuid: DealUuid) -> PathBuf {
        self.dir.join(format!("{uuid}.data"))
    }

    /// The commitment state saved beside a partial data file.
    pub fn snapshot_path(&self, uuid: DealUuid) -> PathBuf {
        self.dir.join(format!("{uuid}.commp"))
    }

    fn create_dir(&self) -> io::Result<()> {
        fs::create_dir_all(&self.dir).map_err(|e| self.explain("create", &self.dir, e))
    }

    fn explain(&self, what: &str, path: &Path, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("cannot {what} {}: {e}", path.display()))
    }

    /// Open the deal's data where its last snapshot left it (from zero without one, or
    /// when the snapshot is unreadable or claims more than the file holds).
    pub fn resume(&self, uuid: DealUuid) -> io::Result<Resumed> {
        self.create_dir()?;
        let snap = self.snapshot_path(uuid);
        let commp = match fs::read(&snap) {
            Ok(bytes) => match CommP::restore(&bytes) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(deal = %uuid, path = %snap.display(), error = %e, "unreadable snapshot: restarting the data from zero");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.explain("read", &snap, e)),
        };
        let path = self.data_path(uuid);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| self.explain("open", &path, e))?;
        let len = file.metadata()?.len();
        let commp = commp
            .filter(|c| c.bytes_written() <= len)
            .unwrap_or_default();
        let offset = commp.bytes_written();
        file.set_len(offset)
            .map_err(|e| self.explain("truncate", &path, e))?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Resumed { file, commp })
    }

    /// Start the deal's data from zero (a server that ignored our Range, a new upload).
    pub fn restart(&self, uuid: DealUuid) -> io::Result<Resumed> {
        match fs::remove_file(self.snapshot_path(uuid)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(self.explain("remove", &self.snapshot_path(uuid), e))
            }
            _ => {}
        }
        let mut r = self.resume(uuid)?;
        r.file.set_len(0)?;
        r.file.seek(SeekFrom::Start(0))?;
        r.commp = CommP::new();
        Ok(r)
    }

    /// Make `file`'s bytes durable, then record `commp` as the state at its end.
    pub fn save(&self, uuid: DealUuid, file: &File, commp: &CommP) -> io::Result<()> {
        let data = self.data_path(uuid);
        file.sync_data()
            .map_err(|e| self.explain("sync", &data, e))?;
        let snap = self.snapshot_path(uuid);
        let tmp = snap.with_extension("commp.tmp");
        let mut t = File::create(&tmp).map_err(|e| self.explain("create", &tmp, e))?;
        t.write_all(&commp.snapshot())
            .and_then(|()| t.sync_all())
            .map_err(|e| self.explain("write", &tmp, e))?;
        fs::rename(&tmp, &snap).map_err(|e| self.explain("rename", &tmp, e))?;
        // The rename is durable only once the directory is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.explain("sync", &self.dir, e))
    }

    /// The deal no longer needs its staged data (in a sector, or failed): remove the data
    /// and its snapshot. Missing files are fine.
    pub fn remove(&self, uuid: DealUuid) -> io::Result<()> {
        for path in [self.data_path(uuid), self.snapshot_path(uuid)] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(self.explain("remove", &path, e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The deals with a file in the staging directory (none if it does not exist yet).
    pub fn staged_deals(&self) -> io::Result<Vec<DealUuid>> {
        let entries = match fs::read_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            r => r.map_err(|e| self.explain("list", &self.dir, e))?,
        };
        let mut deals = std::collections::BTreeSet::new();
        for entry in entries {
            let name = entry
                .map_err(|e| self.explain("list", &self.dir, e))?
                .file_name();
            let uuid = name.to_str().and_then(|n| {
                let stem = n
                    .strip_suffix(".data")
                    .or_else(|| n.strip_suffix(".commp"))?;
                stem.parse::<DealUuid>().ok()
            });
            deals.extend(uuid);
        }
        Ok(deals.into_iter().collect())
    }

    /// The data is complete: its snapshot is no longer needed.
    pub fn complete(&self, uuid: DealUuid) -> io::Result<()> {
        match fs::remove_file(self.snapshot_path(uuid)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(self.explain("remove", &self.snapshot_path(uuid), e))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_cuts_the_data_back_to_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let s = Staging::new(dir.path().join("staging"));
        let uuid = DealUuid([7; 16]);
        let mut r = s.resume(uuid).unwrap();
        assert_eq!(r.commp.bytes_written(), 0);
        r.file.write_all(&[1; 1000]).unwrap();
        r.commp.update(&[1; 1000]);
        s.save(uuid, &r.file, &r.commp).unwrap();
        // Written after the snapshot, never committed: must be dropped on resume.
        r.file.write_all(&[2; 500]).unwrap();
        drop(r);
        let r = s.resume(uuid).unwrap();
        assert_eq!(r.commp.bytes_written(), 1000);
        assert_eq!(fs::metadata(s.data_path(uuid)).unwrap().len(), 1000);
        drop(r);
        // A snapshot claiming more than the file holds is not trusted.
        fs::OpenOptions::new()
            .write(true)
            .open(s.data_path(uuid))
            .unwrap()
            .set_len(10)
            .unwrap();
        let r = s.resume(uuid).unwrap();
        assert_eq!(r.commp.bytes_written(), 0);
        assert_eq!(fs::metadata(s.data_path(uuid)).unwrap().len(), 0);
        drop(r);
        let r = s.restart(uuid).unwrap();
        assert_eq!(r.commp.bytes_written(), 0);
        assert!(!s.snapshot_path(uuid).exists());
    }
}
