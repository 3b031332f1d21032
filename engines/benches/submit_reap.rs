//! Cost of one submit → reap round trip per engine on a small file in the page cache, so the
//! device is out of the picture: 4 KiB reads, one at a time and in batches of 32 (one flush,
//! reap until all 32 are back). Every variant reads through the page cache (`direct=false`):
//! O_DIRECT would measure the device, and on tmpfs io_uring cannot complete a read inline
//! (no NOWAIT there), so it would measure the io-wq punt (~50 µs per read here), not the ring.
//!
//! glommio has no page-cache path on a disk (its `DmaFile` is always O_DIRECT there), so it is
//! measured in a second group on /dev/shm, where glommio itself turns O_DIRECT off and reads
//! through its ring; `uring:direct=false` and `null` run in the same group as its peers. The
//! difference between glommio and uring there is the cost of the bridge (re-entering
//! `LocalExecutor::run`, a task per op, glommio's reactor pass) on top of the same ring work.
//! tmpfs punts those reads to io-wq, so a third group isolates the engines' own cost: O_DIRECT
//! reads at end of file on the disk filesystem, which the kernel completes inline with 0 bytes
//! and no device I/O, for `uring` (O_DIRECT), `aio`, `glommio` and `poll` (whose `reap` spins).
//! That group runs twice: through `submit`/`reap` called from outside (`..._eof`), and through
//! the engine's own loop, `Recorder::run_loop` (`..._eof_loop`): a task in glommio's executor,
//! a poller of poll's reactor, the default blocking loop for the others.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use snapbench_engines::{
    Completion, EngineConfig, EngineSpec, FactoryVisitor, FileKind, Flow, LoopBody, MatchId, Op,
    Recorder, RecorderFactory,
};

const VARIANTS: &[&str] = &[
    "null",
    "buffered",
    "uring:direct=false",
    "uring:direct=false,fixed_buffers=true,fixed_files=true",
    "uring:direct=false,single_issuer=true,defer_taskrun=true",
    "aio:direct=false",
    "aio:direct=false,user_reap=true",
    "poll:direct=false",
    "buffered:threads=4",
    "tokio",
    "tokio:flavor=multi",
    "tokio:bridge=task",
    "tokio:max_blocking_threads=4",
];

const FILE: MatchId = MatchId(1);
const FILE_BYTES: u64 = 1 << 20;

fn wait_all<R: Recorder>(r: &mut R, n: usize, out: &mut Vec<Completion<R::Buf>>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        r.reap(out, deadline).expect("reap");
        assert!(Instant::now() < deadline, "completions never came");
    }
}

/// Variants measured on /dev/shm (tmpfs), glommio's page-cache path.
const SHM_VARIANTS: &[&str] = &["null", "uring:direct=false", "glommio"];

/// Variants measured with O_DIRECT reads at end of file (no device I/O).
const EOF_VARIANTS: &[&str] = &["null", "uring", "aio", "glommio", "poll"];

struct Bench<'a> {
    c: &'a mut Criterion,
    group: &'a str,
    variant: &'a str,
    dir: &'a Path,
    /// Added to every read offset (`FILE_BYTES`: reads at end of file).
    read_base: u64,
    /// Also measure the round trips through the engine's own loop (`<group>_loop`).
    in_loop: bool,
}

impl FactoryVisitor for Bench<'_> {
    type Out = ();
    fn visit<F: RecorderFactory + 'static>(self, factory: F) {
        let cfg = EngineConfig {
            dir: self.dir.to_path_buf(),
            worker: 0,
            workers: 1,
            queue_depth: 64,
            buf_bytes: 64 * 1024,
            buf_count: 64,
            dio_align_bytes: 4096,
            shared: Default::default(),
        };
        let mut r: F::R = factory.build(&cfg).expect("engine builds");
        let mut out = Vec::with_capacity(64);
        r.submit(
            0,
            Op::Create {
                file: FILE,
                kind: FileKind::Data,
                prealloc_bytes: FILE_BYTES,
            },
        )
        .ok()
        .expect("room");
        wait_all(&mut r, 1, &mut out);
        assert!(out.drain(..).all(|c| c.res.is_ok()));
        // Write the file in full so reads do real copies.
        for i in 0..(FILE_BYTES / 65536) {
            let mut b = r.alloc_buf(65536).expect("buffer");
            b.as_mut().fill(i as u8);
            r.submit(
                i,
                Op::Write {
                    file: FILE,
                    offset: i * 65536,
                    buf: b,
                    dsync: false,
                },
            )
            .ok()
            .expect("room");
            wait_all(&mut r, 1, &mut out);
            for c in out.drain(..) {
                assert!(c.res.is_ok(), "layout write failed");
                // glommio's writes consume their buffer.
                if let Some(b) = c.buf {
                    r.release_buf(b);
                }
            }
        }
        let mut g = self.c.benchmark_group(self.group);
        for batch in [1usize, 32] {
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(BenchmarkId::new(self.variant, batch), |bch| {
                let mut off = 0u64;
                bch.iter(|| {
                    for i in 0..batch {
                        let buf = r.alloc_buf(4096).expect("buffer");
                        off = (off + 4096 * 7) % FILE_BYTES;
                        r.submit(
                            i as u64,
                            Op::Read {
                                file: FILE,
                                offset: self.read_base + off,
                                buf,
                            },
                        )
                        .ok()
                        .expect("room");
                    }
                    wait_all(&mut r, batch, &mut out);
                    for c in out.drain(..) {
                        r.release_buf(c.buf.expect("buffer back"));
                    }
                });
            });
        }
        g.finish();
        if self.in_loop {
            // The same round trips, run by the engine's own loop (`Recorder::run_loop`): for
            // glommio a task in its executor, for poll a poller of its reactor, for the others
            // the default blocking loop (step, then wait in reap).
            let mut g = self.c.benchmark_group(format!("{}_loop", self.group));
            let mut body = RoundTrips {
                eng: r,
                out,
                batch: 1,
                left: 0,
                off: 0,
                read_base: self.read_base,
            };
            for batch in [1usize, 32] {
                g.throughput(Throughput::Elements(batch as u64));
                g.bench_function(BenchmarkId::new(self.variant, batch), |bch| {
                    bch.iter_custom(|iters| {
                        body.batch = batch;
                        body.left = iters;
                        let t0 = Instant::now();
                        F::R::run_loop(&mut body).expect("run_loop");
                        t0.elapsed()
                    });
                });
            }
            g.finish();
            r = body.eng;
            out = body.out;
        }
        r.drain(&mut out, Instant::now() + Duration::from_secs(10))
            .expect("drain");
    }
}

/// A loop body that does `left` round trips of `batch` 4 KiB reads: submit them all, take the
/// completions as they come, then the next batch.
struct RoundTrips<R: Recorder> {
    eng: R,
    out: Vec<Completion<R::Buf>>,
    batch: usize,
    left: u64,
    off: u64,
    read_base: u64,
}

impl<R: Recorder> LoopBody for RoundTrips<R> {
    type R = R;
    fn engine(&mut self) -> &mut R {
        &mut self.eng
    }
    fn step(&mut self, now: Instant) -> Flow {
        if self.out.len() >= self.batch {
            for c in self.out.drain(..) {
                assert!(c.res.is_ok(), "read failed");
                self.eng.release_buf(c.buf.expect("buffer back"));
            }
            self.left -= 1;
        }
        if self.left == 0 {
            return Flow::Done;
        }
        if self.eng.in_flight() == 0 && self.out.is_empty() {
            for i in 0..self.batch {
                let buf = self.eng.alloc_buf(4096).expect("buffer");
                self.off = (self.off + 4096 * 7) % FILE_BYTES;
                self.eng
                    .submit(
                        i as u64,
                        Op::Read {
                            file: FILE,
                            offset: self.read_base + self.off,
                            buf,
                        },
                    )
                    .ok()
                    .expect("room");
            }
        }
        Flow::Wait(now + Duration::from_secs(10))
    }
    fn complete(&mut self, deadline: Instant) -> std::io::Result<()> {
        self.eng.reap(&mut self.out, deadline).map(|_| ())
    }
}

fn group(
    c: &mut Criterion,
    name: &str,
    base: &Path,
    variants: &[&str],
    read_base: u64,
    in_loop: bool,
) {
    for variant in variants {
        let spec = EngineSpec::parse(variant).expect("variant parses");
        let dir = tempfile::tempdir_in(base).expect("temp dir");
        if let Err(why) = spec.check_supported(dir.path()) {
            eprintln!("skipping {variant}: {why}");
            continue;
        }
        spec.visit(Bench {
            c,
            group: name,
            variant,
            dir: dir.path(),
            read_base,
            in_loop,
        });
    }
}

fn submit_reap(c: &mut Criterion) {
    let tmp = std::env::temp_dir();
    group(c, "submit_reap_4k_read", &tmp, VARIANTS, 0, false);
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        group(c, "submit_reap_4k_read_shm", shm, SHM_VARIANTS, 0, false);
    } else {
        eprintln!("skipping the /dev/shm group: no /dev/shm");
    }
    group(
        c,
        "submit_reap_4k_read_eof",
        &tmp,
        EOF_VARIANTS,
        FILE_BYTES,
        true,
    );
}

criterion_group!(benches, submit_reap);
criterion_main!(benches);
