//! The piece store: `<dir>/<piece CID>`, a sealed deal's data as received, kept for
//! `/piece/` when `[retrieval] keep_pieces` is on. Files are keyed by piece CID (deals
//! of the same piece share one). Uses only std; everything here blocks (call it from
//! the blocking pool, except [`PieceStore::path`]). `/piece/` (the retrieval module)
//! reads from it.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use dealport_core::wire::Cid;

#[derive(Debug, Clone)]
pub struct PieceStore {
    dir: PathBuf,
}

impl PieceStore {
    pub fn new(dir: PathBuf) -> PieceStore {
        PieceStore { dir }
    }

    /// Where `piece` is kept.
    pub fn path(&self, piece: &Cid) -> PathBuf {
        self.dir.join(piece.to_string())
    }

    /// Move `staged` (a complete, checked data file of `piece`) into the store. A piece
    /// already kept stays as it is and `staged` goes. Across file systems the data is
    /// copied to a temporary name, fsynced and renamed, so the store never holds a
    /// partial piece under its CID.
    pub fn keep(&self, staged: &Path, piece: &Cid) -> io::Result<()> {
        let explain = |what: &str, p: &Path, e: io::Error| {
            io::Error::new(e.kind(), format!("cannot {what} {}: {e}", p.display()))
        };
        fs::create_dir_all(&self.dir).map_err(|e| explain("create", &self.dir, e))?;
        let dest = self.path(piece);
        if dest.exists() {
            return match fs::remove_file(staged) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(explain("remove", staged, e)),
                _ => Ok(()),
            };
        }
        match fs::rename(staged, &dest) {
            Ok(()) => return sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {}
            Err(e) => {
                let what = format!("move {} to", staged.display());
                return Err(explain(&what, &dest, e));
            }
        }
        let tmp = self.dir.join(format!(".{piece}.partial"));
        fs::copy(staged, &tmp).map_err(|e| explain("copy the staged data to", &tmp, e))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| explain("sync", &tmp, e))?;
        fs::rename(&tmp, &dest).map_err(|e| explain("rename", &tmp, e))?;
        sync_dir(&self.dir)?;
        fs::remove_file(staged).map_err(|e| explain("remove", staged, e))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_piece_moves_once_and_a_second_copy_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = PieceStore::new(dir.path().join("pieces"));
        let piece = Cid::v1(0xf101, 0x1012, &[1; 32]);
        let staged = dir.path().join("a.data");
        fs::write(&staged, b"the data").unwrap();
        store.keep(&staged, &piece).unwrap();
        assert!(!staged.exists());
        assert_eq!(fs::read(store.path(&piece)).unwrap(), b"the data");
        // Another deal of the same piece: its staged copy goes, the kept one stays.
        let other = dir.path().join("b.data");
        fs::write(&other, b"the data").unwrap();
        store.keep(&other, &piece).unwrap();
        assert!(!other.exists());
        assert_eq!(fs::read(store.path(&piece)).unwrap(), b"the data");
        // Nothing staged: an error naming the file, nothing kept under another CID.
        let missing = Cid::v1(0xf101, 0x1012, &[2; 32]);
        let e = store
            .keep(&dir.path().join("gone.data"), &missing)
            .unwrap_err();
        assert!(e.to_string().contains("gone.data"), "{e}");
        assert!(!store.path(&missing).exists());
    }
}
