//! `dealport` on smol: the executor and the blocking pool. Everything else, signals
//! included, is in `dealport_app` and `dealport_node`.

/// jemalloc rather than glibc's malloc: on a million-deal sled store, where every
/// proposal pages sled leaves in and out on the blocking pool's threads, glibc's per-thread
/// arenas fragment (`malloc_consolidate` and `unlink_chunk` high in the profile); jemalloc
/// accepted ~1.5x the deals per second there, at less memory (BENCHMARKS.md, "A long
/// history"). Its `background_threads` feature returns freed pages to the kernel while
/// the node is at rest (BENCHMARKS.md, "jemalloc's background threads").
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::{
    process::ExitCode,
    sync::{Arc, OnceLock},
};

use dealport_app::Shell;
use dealport_node::runtime::{BoxTask, Runtime};
use smol::Executor;

/// One executor, run by one thread per core (at least two), for the whole process.
fn executor() -> &'static Arc<Executor<'static>> {
    static EX: OnceLock<Arc<Executor<'static>>> = OnceLock::new();
    EX.get_or_init(|| {
        let ex = Arc::new(Executor::new());
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        for i in 0..threads {
            let ex = ex.clone();
            std::thread::Builder::new()
                .name(format!("dealport-exec-{i}"))
                .spawn(move || smol::block_on(ex.run(smol::future::pending::<()>())))
                .expect("spawn an executor thread");
        }
        ex
    })
}

struct Smol;

impl Runtime for Smol {
    fn spawn(&self, fut: BoxTask) {
        executor().spawn(fut).detach();
    }

    fn spawn_blocking(&self, f: Box<dyn FnOnce() + Send>) {
        smol::unblock(f).detach();
    }
}

fn main() -> ExitCode {
    let shell = Shell {
        runtime: Arc::new(Smol),
        runtime_name: "smol",
    };
    smol::block_on(dealport_app::main(shell))
}
