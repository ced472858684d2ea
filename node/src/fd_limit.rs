//! The open-file limit: every libp2p connection, HTTP connection and relay holds a file
//! descriptor, and the usual soft limit (1024) sits below the default connection limits.
//! At start the soft limit is raised to the hard one, as go-libp2p's rcmgr and many
//! servers do, so the configured limits (not EMFILE) decide who is refused.
//!
//! Layer: bottom; uses no other module of the node.

/// The soft open-file limit before and after the raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub before: Option<u64>,
    pub after: Option<u64>,
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (`None` means unlimited). Errors are
/// one sentence with the values tried.
#[cfg(unix)]
pub fn raise_nofile() -> Result<Raised, String> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current == now.maximum {
        return Ok(Raised {
            before: now.current,
            after: now.current,
        });
    }
    let want = Rlimit {
        current: now.maximum,
        maximum: now.maximum,
    };
    setrlimit(Resource::Nofile, want).map_err(|e| {
        format!(
            "cannot raise the open-file limit from {:?} to {:?}: {e}",
            now.current, now.maximum
        )
    })?;
    Ok(Raised {
        before: now.current,
        after: getrlimit(Resource::Nofile).current,
    })
}

#[cfg(not(unix))]
pub fn raise_nofile() -> Result<Raised, String> {
    Err("raising the open-file limit is only done on unix".into())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_ends_at_the_hard_limit() {
        let r = raise_nofile().expect("raise");
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(r.after, now.current);
        assert_eq!(now.current, now.maximum);
    }
}
