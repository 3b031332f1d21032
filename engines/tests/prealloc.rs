//! The `prealloc` run setting (issue 13): `zeroed` leaves a created log with no unwritten
//! extent (FIEMAP), `fallocate` leaves its preallocation unwritten (so the check can fail), for
//! every file-backed engine that follows the setting; `write_zeroes` works or is refused with
//! its reason; glommio refuses any setting but `fallocate`.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use snapbench_engines::{
    file_name, probe_prealloc, EngineConfig, EngineSpec, FactoryVisitor, FileKind, MatchId, Op,
    Prealloc, Recorder, RecorderFactory, RunShared,
};

fn config(dir: &Path, prealloc: Prealloc) -> EngineConfig {
    EngineConfig {
        dir: dir.to_path_buf(),
        worker: 0,
        workers: 1,
        queue_depth: 8,
        buf_bytes: 64 * 1024,
        buf_count: 8,
        dio_align_bytes: 4096,
        shared: Arc::new(RunShared {
            prealloc,
            ..Default::default()
        }),
    }
}

/// Extents of the file as FIEMAP reports them: (length, unwritten).
fn extents(path: &Path) -> Vec<(u64, bool)> {
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 1;
    const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
    const N: usize = 64;
    // struct fiemap (32 bytes) and N struct fiemap_extent (56 bytes each), as u64 words.
    let mut words = vec![0u64; (32 + 56 * N) / 8];
    words[1] = u64::MAX; // fm_length
    words[2] = u64::from(FIEMAP_FLAG_SYNC); // fm_flags (low half); fm_mapped_extents = 0
    words[3] = N as u64; // fm_extent_count (low half)
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: `words` is a struct fiemap with room for N extents, alive for the call; the
    // kernel writes at most N extents into it.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FIEMAP, words.as_mut_ptr()) };
    assert_eq!(r, 0, "FIEMAP: {}", std::io::Error::last_os_error());
    let mapped = (words[2] >> 32) as usize;
    (0..mapped.min(N))
        .map(|i| {
            let e = &words[4 + i * 7..4 + i * 7 + 7];
            let flags = e[5] as u32;
            (e[2], flags & FIEMAP_EXTENT_UNWRITTEN != 0)
        })
        .collect()
}

struct Check(Prealloc, std::path::PathBuf, &'static str);

impl FactoryVisitor for Check {
    type Out = ();
    fn visit<F: RecorderFactory + 'static>(self, factory: F) {
        let Check(how, dir, variant) = self;
        let mut r = factory.build(&config(&dir, how)).expect("engine builds");
        let op = Op::Create {
            file: MatchId(3),
            kind: FileKind::Log,
            prealloc_bytes: 1 << 20,
        };
        assert!(r.submit(1, op).is_ok());
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.is_empty() && Instant::now() < deadline {
            r.reap(&mut out, deadline).unwrap();
        }
        assert!(out[0].res.is_ok(), "{variant}: create: {:?}", out[0].res);
        let path = dir.join(file_name(MatchId(3), FileKind::Log));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        let ext = extents(&path);
        let unwritten: u64 = ext.iter().filter(|e| e.1).map(|e| e.0).sum();
        match how {
            Prealloc::Fallocate => assert!(unwritten > 0, "{variant}: {ext:?}"),
            _ => assert_eq!(unwritten, 0, "{variant} {}: {ext:?}", how.name()),
        }
        assert!(std::fs::read(&path).unwrap().iter().all(|&b| b == 0));
    }
}

#[test]
fn zeroed_preallocation_leaves_no_unwritten_extent() {
    for variant in [
        "buffered",
        "buffered:direct=true,threads=2",
        "aio",
        "uring",
        "tokio",
    ] {
        for how in [Prealloc::Fallocate, Prealloc::Zeroed] {
            let dir = tempfile::tempdir_in("/var/tmp").unwrap();
            let spec = EngineSpec::parse(variant).unwrap();
            spec.visit(Check(how, dir.path().to_path_buf(), variant));
        }
    }
}

#[test]
fn write_zeroes_works_or_says_why() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    match probe_prealloc(dir.path(), Prealloc::WriteZeroes) {
        Ok(()) => EngineSpec::parse("aio").unwrap().visit(Check(
            Prealloc::WriteZeroes,
            dir.path().to_path_buf(),
            "aio",
        )),
        Err(e) => assert!(
            e.to_string().contains("FALLOC_FL_WRITE_ZEROES") && e.to_string().contains("zeroed"),
            "{e}"
        ),
    }
    assert!(probe_prealloc(dir.path(), Prealloc::Zeroed).is_ok());
}

#[test]
fn glommio_refuses_other_preallocation() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    struct Build(std::path::PathBuf);
    impl FactoryVisitor for Build {
        type Out = String;
        fn visit<F: RecorderFactory + 'static>(self, factory: F) -> String {
            match factory.build(&config(&self.0, Prealloc::Zeroed)) {
                Ok(_) => "built".into(),
                Err(e) => e.to_string(),
            }
        }
    }
    let e = EngineSpec::parse("glommio")
        .unwrap()
        .visit(Build(dir.path().to_path_buf()));
    assert!(e.contains("prealloc=zeroed is not supported"), "{e}");
}
