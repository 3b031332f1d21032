//! The last step of stage one: checks that need the file system. `--dir` must be usable, every
//! engine variant supported there, O_DIRECT sizes must fit its alignment, `--out` must be free,
//! and the files a run adopts (`--file-path`, `--corpus`, `--ack-log`'s folder) must exist.
//!
//! A probe that needs a file makes it inside a private folder of `--dir`'s nearest existing
//! ancestor, and that folder goes away with everything in it (whatever an engine's probe left
//! there) before the checks return: a plan refused as bad input leaves the file system as it was.

use std::io;
use std::path::{Path, PathBuf};

use super::{BadInput, Plan, RunPlan, Workload};
use crate::machine;

/// A private folder for probes, removed with everything in it when dropped.
struct ProbeDir {
    path: PathBuf,
}

impl ProbeDir {
    /// Make `.snapbench-plan-<pid>[-n]` inside `base` (never an existing folder).
    fn create(base: &Path) -> io::Result<ProbeDir> {
        let pid = std::process::id();
        let mut n = 0u32;
        loop {
            let name = if n == 0 {
                format!(".snapbench-plan-{pid}")
            } else {
                format!(".snapbench-plan-{pid}-{n}")
            };
            let path = base.join(name);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(ProbeDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 16 => n += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The direct-I/O alignment of a regular file here (ext4 reports STATX_DIOALIGN for
    /// regular files only), from a probe file made for the purpose.
    fn dio_align(&self) -> io::Result<machine::DioAlign> {
        let file = self.path.join("dio");
        std::fs::File::create(&file).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot make a probe file in {}: {e}", self.path.display()),
            )
        })?;
        let align = machine::dio_align(&file);
        let _ = std::fs::remove_file(&file);
        align.map_err(io::Error::other)
    }
}

impl Drop for ProbeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The prefilled logs (ids from `PREFILL_ID_BASE`) of a corpus folder, sorted.
pub fn corpus_logs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| {
            crate::snaplog::parse_log_file_name(&e.file_name().to_string_lossy())
                .is_some_and(|id| id >= snapbench_workloads::reads::PREFILL_ID_BASE)
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}

/// Whether `dir` can be written to and searched by this process.
fn writable(dir: &Path) -> bool {
    rustix::fs::access(
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .is_ok()
}

/// Check what needs the file system, leaving it as it was: --dir is usable, engines are
/// supported there, O_DIRECT sizes fit its alignment, --out is free. Drops variants of the
/// embedded suite that this machine lacks (with a note in `plan.skipped`) and fails for any other
/// unsupported variant; numbers the runs that remain.
pub fn check_target(plan: &mut Plan) -> Result<(), BadInput> {
    let dir = plan.global.dir.clone();
    if dir.exists() && !dir.is_dir() {
        return Err(BadInput(format!(
            "--dir {} is not a directory; point --dir at a directory (it is created if missing)",
            dir.display()
        )));
    }
    let base = snapbench_engines::buffered::nearest_existing(&dir);
    if !base.is_dir() {
        return Err(BadInput(format!(
            "--dir {}: its nearest existing ancestor {} is not a directory",
            dir.display(),
            base.display()
        )));
    }
    if !writable(&base) {
        return Err(BadInput(format!(
            "--dir {}: {} is not writable; choose a directory you can write to",
            dir.display(),
            base.display()
        )));
    }
    let probe = ProbeDir::create(&base).map_err(|e| {
        BadInput(format!(
            "--dir {}: cannot make a probe folder in {}: {e}; choose a directory you can write to",
            dir.display(),
            base.display()
        ))
    })?;
    // The probes ran in the private folder; the user knows the folder it lies in.
    let name_base = |why: String| {
        why.replace(
            &probe.path.display().to_string(),
            &base.display().to_string(),
        )
    };
    let mut kept = Vec::new();
    for run in plan.runs.drain(..) {
        match run.engine.check_supported(&probe.path).map_err(name_base) {
            Ok(()) => {
                check_on_file(&run)?;
                kept.push(run)
            }
            Err(why) if plan.embedded => plan.skipped.push(why),
            Err(why) => return Err(BadInput(why)),
        }
    }
    if kept.is_empty() {
        return Err(BadInput(format!(
            "no engine variant of the suite can run here: {}",
            plan.skipped.join("; ")
        )));
    }
    for (i, r) in kept.iter_mut().enumerate() {
        r.set_index(i + 1);
    }
    plan.runs = kept;
    if plan.runs.iter().any(|r| r.engine.direct()) {
        let align = probe.dio_align().map_err(|e| {
            BadInput(format!(
                "--dir {}: direct I/O is not possible there: {}",
                dir.display(),
                name_base(e.to_string())
            ))
        })?;
        // Runs with --file-path are checked against that file's alignment (check_inputs).
        check_direct_sizes(
            plan.runs.iter().filter(|r| r.micro_file.is_none()),
            &align,
            &base,
        )?;
    }
    for how in [
        snapbench_engines::Prealloc::Zeroed,
        snapbench_engines::Prealloc::WriteZeroes,
    ] {
        if plan.runs.iter().any(|r| r.writer.prealloc == how) {
            snapbench_engines::probe_prealloc(&probe.path, how).map_err(|e| {
                BadInput(format!(
                    "--dir {}: prealloc = {} is not possible there: {}",
                    dir.display(),
                    how.name(),
                    name_base(e.to_string())
                ))
            })?;
        }
    }
    drop(probe);
    check_out(plan)?;
    for r in &plan.runs {
        check_inputs(r, &dir, &plan.runs)?;
    }
    Ok(())
}

// -- issue 10: micro --
/// A micro run on a regular `--file-path` is probed on that file's filesystem too (in a private
/// folder beside it) when that folder can be made there; a block device, or a read-only
/// folder, keeps the probes of `--dir`.
fn check_on_file(run: &RunPlan) -> Result<(), BadInput> {
    let Some(f) = &run.micro_file else {
        return Ok(());
    };
    if !f.is_file() {
        return Ok(());
    }
    let parent = std::path::absolute(f)
        .ok()
        .and_then(|a| a.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let Ok(probe) = ProbeDir::create(&parent) else {
        return Ok(());
    };
    run.engine.check_supported(&probe.path).map_err(|why| {
        BadInput(format!(
            "--file-path {}: {}",
            f.display(),
            why.replace(
                &probe.path.display().to_string(),
                &parent.display().to_string()
            )
        ))
    })
}

/// O_DIRECT runs: micro sizes are multiples of the alignment, which fits a SNAPLOG1 block.
fn check_direct_sizes<'a>(
    runs: impl IntoIterator<Item = &'a RunPlan>,
    align: &machine::DioAlign,
    base: &Path,
) -> Result<(), BadInput> {
    let need = u64::from(align.offset_align_bytes.max(align.mem_align_bytes)).max(1);
    for r in runs.into_iter().filter(|r| r.engine.direct()) {
        if let Workload::Micro(p) = &r.workload {
            if u64::from(p.bs_bytes) % need != 0 || p.file_size_bytes % need != 0 {
                return Err(BadInput(format!(
                    "run {}: bs {} (and file_size) must be a multiple of {need} bytes with direct=true on {} ({}); use e.g. bs = 4k",
                    r.run_id, p.bs_bytes, base.display(), align.source
                )));
            }
        }
        if need > crate::snaplog::BLOCK_BYTES as u64 {
            return Err(BadInput(format!(
                "run {}: direct I/O alignment {need} exceeds the 4096-byte SNAPLOG1 block on {}",
                r.run_id,
                base.display()
            )));
        }
    }
    Ok(())
}

/// `--out` is a folder (or absent) that holds no results, unless `--force`.
fn check_out(plan: &Plan) -> Result<(), BadInput> {
    let Some(out) = &plan.global.out else {
        return Ok(());
    };
    if out.exists() && !out.is_dir() {
        return Err(BadInput(format!(
            "--out {} is a file; give a folder",
            out.display()
        )));
    }
    if crate::results::holds_results(out) && !plan.global.force {
        return Err(BadInput(format!(
            "--out {} already holds results; pass --force to overwrite or choose another folder",
            out.display()
        )));
    }
    Ok(())
}

/// The files one run adopts exist and fit: `--file-path`, `--corpus`, `--ack-log`'s folder.
fn check_inputs(r: &RunPlan, dir: &Path, runs: &[RunPlan]) -> Result<(), BadInput> {
    if let (Some(f), Workload::Micro(p)) = (&r.micro_file, &r.workload) {
        let meta = std::fs::metadata(f).map_err(|e| {
            BadInput(format!(
                "--file-path {}: {e}; give an existing, fully written file or a block device",
                f.display()
            ))
        })?;
        // -- issue 10: micro -- a block device is addressed within its size, never laid out.
        let bdev = machine::is_block_device_path(f);
        let size = machine::file_size_bytes(f).map_err(|e| {
            BadInput(format!(
                "--file-path {}: cannot read its size: {e}; check the permissions",
                f.display()
            ))
        })?;
        if !(meta.is_file() || bdev) || size < p.file_size_bytes {
            return Err(BadInput(format!(
                "--file-path {}: must be a regular file or block device of at least file_size ({} bytes); it has {size} bytes — lower --file-size or lay out a bigger file",
                f.display(),
                p.file_size_bytes,
            )));
        }
        if r.engine.direct() {
            let align = machine::dio_align(f).map_err(|e| {
                BadInput(format!(
                    "--file-path {}: direct I/O is not possible there: {e}",
                    f.display()
                ))
            })?;
            check_direct_sizes([r], &align, f)?;
        }
    }
    if let Some(c) = &r.corpus {
        let active =
            matches!(&r.workload, Workload::Ds { params, reads, .. } if reads.active(params));
        if !active {
            return Err(BadInput(format!(
                "--corpus {}: run {} has no read side (reads_per_match, reads_per_s and live_viewers are 0)",
                c.display(),
                r.run_id
            )));
        }
        let n = corpus_logs(c).map(|v| v.len()).map_err(|e| {
            BadInput(format!(
                "--corpus {}: {e}; give the run folder of an earlier run kept with --keep-files",
                c.display()
            ))
        })?;
        if n == 0 {
            return Err(BadInput(format!(
                "--corpus {}: holds no prefilled logs (m01…….snap); give the run folder of an earlier run that read, kept with --keep-files",
                c.display()
            )));
        }
        let canon = std::fs::canonicalize(c).unwrap_or_else(|_| c.clone());
        let root = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if runs
            .iter()
            .map(|r| root.join(&r.run_id))
            .any(|d| canon.starts_with(d))
        {
            return Err(BadInput(format!(
                "--corpus {} lies in a run folder this invocation clears first; copy it elsewhere or use another --dir",
                c.display()
            )));
        }
    }
    if let Some(p) = &r.writer.ack_log {
        let parent = p
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(BadInput(format!(
                "--ack-log {}: folder {} does not exist",
                p.display(),
                parent.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn probe_dir_goes_away_with_what_was_left_in_it() {
        let tmp = tempfile::tempdir().unwrap();
        let before = listing(tmp.path());
        {
            let p = ProbeDir::create(tmp.path()).unwrap();
            std::fs::write(p.path.join("left-by-a-probe"), b"x").unwrap();
            let again = ProbeDir::create(tmp.path()).unwrap();
            assert_ne!(
                p.path, again.path,
                "a second probe folder never reuses the first"
            );
            let a = p.dio_align().unwrap();
            assert!(a.offset_align_bytes > 0);
        }
        assert_eq!(listing(tmp.path()), before);
    }

    #[test]
    fn corpus_logs_lists_only_prefilled_logs() {
        let tmp = tempfile::tempdir().unwrap();
        let id = snapbench_workloads::reads::PREFILL_ID_BASE;
        for name in [
            format!("m{:016x}.snap", id + 1),
            format!("m{:016x}.snap", id),
            format!("m{:016x}.snap", 1),
            "notes.txt".to_string(),
        ] {
            std::fs::write(tmp.path().join(name), b"").unwrap();
        }
        let logs = corpus_logs(tmp.path()).unwrap();
        assert_eq!(
            logs,
            vec![
                tmp.path().join(format!("m{:016x}.snap", id)),
                tmp.path().join(format!("m{:016x}.snap", id + 1)),
            ]
        );
    }

    /// A ramfs mounted for one test, unmounted when dropped (lazily: an engine's probe may
    /// still hold a descriptor of its removed probe file in this process).
    struct Ramfs(PathBuf);

    impl Drop for Ramfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }

    #[test]
    #[ignore = "needs root: mounts a ramfs, which refuses O_DIRECT"]
    fn refused_variants_leave_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let mnt = tmp.path().join("ramfs");
        std::fs::create_dir(&mnt).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "ramfs", "none"])
            .arg(&mnt)
            .status()
            .unwrap()
            .success();
        assert!(mounted, "mount -t ramfs {}", mnt.display());
        let _guard = Ramfs(mnt.clone());
        let suite = super::super::Suite::parse("[[run]]\nengine = \"null\"\n", "t.toml").unwrap();
        // Each of these probes with a file of its own on --dir's nearest existing folder.
        for engine in ["buffered:direct=true", "aio", "uring", "glommio"] {
            let runs = super::super::expand(
                &suite,
                &super::super::RawFields::new(),
                &[engine.to_string()],
            )
            .unwrap();
            let mut plan = Plan {
                suite: "t".into(),
                runs,
                skipped: Vec::new(),
                embedded: false,
                global: super::super::Global {
                    dir: mnt.join("data"),
                    out: Some(mnt.join("out")),
                    force: false,
                    quick: false,
                },
                results_name: "t".into(),
            };
            let err = check_target(&mut plan).unwrap_err().0;
            assert!(err.contains("unsupported here"), "{engine}: {err}");
            assert!(
                err.contains(&mnt.display().to_string()) && !err.contains(".snapbench-plan"),
                "{engine}: the message names --dir's folder: {err}"
            );
            assert_eq!(listing(&mnt), Vec::<PathBuf>::new(), "{engine} left files");
        }
    }

    // -- issue 10: micro --
    #[test]
    fn a_given_file_is_probed_beside_it_leaving_nothing() {
        use crate::plan::{expand, RawFields, Suite};
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("given.dat");
        std::fs::write(&f, vec![1u8; 1 << 20]).unwrap();
        let text = format!(
            "[[run]]\nengine = \"buffered\"\nworkload = \"micro\"\nfile_size = \"1MiB\"\nfile_path = {:?}\n",
            f.display().to_string()
        );
        let suite = Suite::parse(&text, "t.toml").unwrap();
        let run = expand(&suite, &RawFields::new(), &[]).unwrap().remove(0);
        let before = listing(tmp.path());
        check_on_file(&run).unwrap();
        assert_eq!(listing(tmp.path()), before, "the probe folder is gone");
    }

    #[test]
    #[ignore = "needs root: mounts a ramfs, which refuses O_DIRECT"]
    fn a_given_file_on_another_filesystem_is_probed_there() {
        let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
        let mnt = tmp.path().join("ramfs");
        std::fs::create_dir(&mnt).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "ramfs", "none"])
            .arg(&mnt)
            .status()
            .unwrap()
            .success();
        assert!(mounted, "mount -t ramfs {}", mnt.display());
        let _guard = Ramfs(mnt.clone());
        let f = mnt.join("given.dat");
        std::fs::write(&f, vec![1u8; 1 << 20]).unwrap();
        let text = format!(
            "[[run]]\nworkload = \"micro\"\nfile_size = \"1MiB\"\nfile_path = {:?}\n",
            f.display().to_string()
        );
        let suite = super::super::Suite::parse(&text, "t.toml").unwrap();
        for engine in ["buffered:direct=true", "uring"] {
            let runs = super::super::expand(
                &suite,
                &super::super::RawFields::new(),
                &[engine.to_string()],
            )
            .unwrap();
            let mut plan = Plan {
                suite: "t".into(),
                runs,
                skipped: Vec::new(),
                embedded: false,
                global: super::super::Global {
                    // --dir supports O_DIRECT; the given file's filesystem does not.
                    dir: tmp.path().join("data"),
                    out: Some(tmp.path().join("out")),
                    force: false,
                    quick: false,
                },
                results_name: "t".into(),
            };
            let err = check_target(&mut plan).unwrap_err().0;
            assert!(err.starts_with("--file-path "), "{engine}: {err}");
            assert!(!err.contains(".snapbench-plan"), "{engine}: {err}");
            assert_eq!(listing(&mnt), vec![f.clone()], "{engine} left files");
        }
    }
}
