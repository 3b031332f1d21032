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

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use snapbench_engines::{
    Completion, EngineConfig, EngineSpec, FactoryVisitor, FileKind, MatchId, Op, Recorder,
    RecorderFactory,
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
        let mut r = factory.build(&cfg).expect("engine builds");
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
        r.drain(&mut out, Instant::now() + Duration::from_secs(10))
            .expect("drain");
    }
}

fn group(c: &mut Criterion, name: &str, base: &Path, variants: &[&str], read_base: u64) {
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
        });
    }
}

fn submit_reap(c: &mut Criterion) {
    let tmp = std::env::temp_dir();
    group(c, "submit_reap_4k_read", &tmp, VARIANTS, 0);
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        group(c, "submit_reap_4k_read_shm", shm, SHM_VARIANTS, 0);
    } else {
        eprintln!("skipping the /dev/shm group: no /dev/shm");
    }
    group(c, "submit_reap_4k_read_eof", &tmp, EOF_VARIANTS, FILE_BYTES);
}

criterion_group!(benches, submit_reap);
criterion_main!(benches);
