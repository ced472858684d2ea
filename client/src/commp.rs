//! `dealport client commp <file>`: a file's piece CID, padded piece size and size, as
//! `boostx commp` prints them (filecoin-project/boost cmd/boostx/utils_cmd.go), with the
//! core's streaming CommP over 1 MiB reads.

use std::{io::Read, path::Path};

use dealport_core::{
    commp::{piece_cid, CommP},
    wire::{primitives::padded_piece_size, Cid},
};

/// A file's piece commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePiece {
    pub piece_cid: Cid,
    /// The padded piece size (a power of two, at least 128).
    pub piece_size: u64,
    /// The file's size in bytes.
    pub car_size: u64,
}

/// Stream `path` through CommP.
pub fn commp_file(path: &Path) -> Result<FilePiece, String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut c = CommP::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        c.update(&buf[..n]);
        size += n as u64;
    }
    if size == 0 {
        return Err(format!(
            "{} is empty: an empty piece cannot be stored",
            path.display()
        ));
    }
    let padded = padded_piece_size(size).ok_or_else(|| {
        format!(
            "{} is too large for one piece ({size} bytes)",
            path.display()
        )
    })?;
    let root = c
        .finish(padded)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(FilePiece {
        piece_cid: piece_cid(&root),
        piece_size: padded,
        car_size: size,
    })
}

impl FilePiece {
    /// boostx's three lines (Go's `fmt.Println("CommP CID: ", cid)` puts two spaces).
    pub fn text(&self) -> String {
        format!(
            "CommP CID:  {}\nPiece size:  {}\nCar file size:  {}\n",
            self.piece_cid, self.piece_size, self.car_size
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "piece_cid": self.piece_cid.to_string(),
            "piece_size": self.piece_size,
            "car_size": self.car_size,
        })
    }
}
