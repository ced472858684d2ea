//! Owner-only files and directories: the data dir (it holds the identity key), config
//! files holding tokens, client key files. One place for the modes and the sentences;
//! the command line and the client's key store use it. Uses no other module of the node.

use std::{io::Write, path::Path};

/// Create `dir` (and its parents) owner-only, or check that an existing one is not open
/// to other users; `what` names it in the error ("data dir", "wallet dir").
pub fn private_dir(dir: &Path, what: &str, holds: &str) -> Result<(), String> {
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        return b
            .create(dir)
            .map_err(|e| format!("cannot create {what} {}: {e}", dir.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Refuse (not merely warn) while other users can get at what it holds.
        if let Ok(m) = std::fs::metadata(dir) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{what} {} is open to other users (mode {mode:o}) and holds {holds}; run `chmod 700 {}`",
                    dir.display(),
                    dir.display()
                ));
            }
        }
    }
    let _ = holds;
    Ok(())
}

/// Write a new file (never an existing one) readable by its owner only, and sync it.
pub fn write_private_file(path: &Path, text: &str) -> Result<(), String> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
