//! Summary: one run's [`Measurement`] becomes its results — the summary row, the per-second
//! rows, the notes that explain it, the nested detail and the histograms. No I/O here: the
//! exporters write what this returns.

use std::collections::BTreeMap;

use crate::driver::Tick;
use crate::measure::{HistKind, Intervals, HIST_KINDS};
use crate::plan::{Durability, RunPlan, Workload};
use crate::results::{RunResult, SummaryRow, TimeseriesRow};

use super::measurement::{Measurement, SecondCpu};

/// Build the run's results from what was measured and its per-second ticks.
pub fn summarize(
    plan: &RunPlan,
    m: Measurement,
    seconds: BTreeMap<u64, (u32, Tick)>,
    intervals: Intervals,
) -> RunResult {
    let reads_active =
        matches!(&plan.workload, Workload::Ds { params, reads, .. } if reads.active(params));
    let verified = reads_active && m.caps.as_ref().is_some_and(|c| c.stores_data);
    let row = row(plan, &m, verified);
    let timeseries = timeseries(plan, seconds, &m.cpu_by_second);
    let notes = notes(plan, &m, reads_active, verified);
    let detail = detail(plan, &m, reads_active, verified, notes);
    let stats = m.stats;
    RunResult {
        row,
        detail,
        timeseries,
        hists: HIST_KINDS
            .iter()
            .map(|k| (*k, stats.hists[*k as usize].clone()))
            .collect(),
        intervals,
    }
}

/// The summary.csv row.
fn row(plan: &RunPlan, m: &Measurement, verified: bool) -> SummaryRow {
    let stats = &m.stats;
    let duration_s = m.duration_s;
    let lat = stats.hists[HistKind::Lat as usize].summary();
    let ack = stats.hists[HistKind::Ack as usize].summary();
    let ttfb = stats.hists[HistKind::ReadTtfb as usize].summary();
    let full = stats.hists[HistKind::ReadFull as usize].summary();
    let is_ds = matches!(plan.workload, Workload::Ds { .. });
    let ds = match &plan.workload {
        Workload::Ds { params, .. } => Some(params),
        Workload::Micro(_) => None,
    };
    let (cpu_user, cpu_sys) = (m.cpu_user_s, m.cpu_sys_s);
    // DS throughput is what completed in the window (by completion time); micro is a closed
    // loop (one I/O submitted as one completes) whose I/Os are counted by submit time.
    let (done_ops, done_bytes, offered_ops_per_s) = if is_ds {
        (
            m.window_ops,
            m.window_bytes,
            m.offered as f64 / plan.duration_s,
        )
    } else {
        (stats.ops, stats.bytes, stats.ops as f64 / duration_s)
    };
    SummaryRow {
        run_id: plan.run_id.clone(),
        engine: plan.engine.name().to_string(),
        variant: plan.engine.variant(),
        workload: plan.workload.name(),
        workers: plan.workers,
        duration_s,
        status: m.status,
        ops: stats.ops,
        bytes: stats.bytes,
        errors: stats.errors,
        ops_per_s: done_ops as f64 / duration_s,
        mib_per_s: done_bytes as f64 / duration_s / (1u64 << 20) as f64,
        lat_p50_us: lat.p50_us,
        lat_p99_us: lat.p99_us,
        lat_p999_us: lat.p999_us,
        lat_max_us: lat.max_us,
        ack_p50_us: ack.p50_us,
        ack_p99_us: ack.p99_us,
        ack_max_us: ack.max_us,
        lat_samples: lat.samples,
        cpu_user_s: Some(cpu_user),
        cpu_sys_s: Some(cpu_sys),
        sys_cpu_busy_s: m.sys_busy_s,
        io_ops: stats.io_ops,
        io_bytes: stats.io_bytes,
        saturated: m.saturated,
        offered_ops: m.offered,
        io_syncs: stats.io_syncs,
        io_write_p99_us: stats.hists[HistKind::IoWrite as usize].quantile_us(0.99),
        io_sync_p99_us: stats.hists[HistKind::IoSync as usize].quantile_us(0.99),
        cpu_cores: Some((cpu_user + cpu_sys) / duration_s),
        cpu_us_per_op: (stats.ops > 0).then(|| (cpu_user + cpu_sys) * 1e6 / stats.ops as f64),
        max_lag_ms: stats.max_lag_ns as f64 / 1e6,
        disk_reads: m.disk.map(|d| d.reads),
        disk_read_bytes: m.disk.map(|d| d.read_bytes),
        disk_writes: m.disk.map(|d| d.writes),
        disk_write_bytes: m.disk.map(|d| d.write_bytes),
        durability: if is_ds {
            plan.writer.durability.to_string()
        } else {
            String::new()
        },
        tail: if is_ds {
            plan.writer.tail_name().to_string()
        } else {
            String::new()
        },
        prealloc: if is_ds {
            plan.writer.prealloc.name().to_string()
        } else {
            String::new()
        },
        seed: plan.seed,
        matches_started: m.matches_started,
        matches_sealed: m.matches_sealed,
        reads: stats.reads,
        read_bytes: stats.read_bytes,
        reads_per_s: stats.reads as f64 / duration_s,
        read_ttfb_p50_us: ttfb.p50_us,
        read_ttfb_p99_us: ttfb.p99_us,
        read_full_p50_us: full.p50_us,
        read_full_p99_us: full.p99_us,
        read_full_max_us: full.max_us,
        io_read_p99_us: stats.hists[HistKind::IoRead as usize].quantile_us(0.99),
        tail_reads: stats.tail_reads,
        read_tail_p99_us: stats.hists[HistKind::ReadTail as usize].quantile_us(0.99),
        read_errors: stats.read_errors,
        reads_verified: verified,
        reads_dropped: stats.reads_dropped,
        reads_no_target: stats.reads_no_target,
        prefill_matches: m.prefill_matches,
        prefill_bytes: m.prefill_bytes,
        prefill_s: m.prefill_s,
        error: m.error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
        // -- issue 10: a row says what it ran --
        matches: ds.map(|p| p.matches),
        tick_hz: ds.map(|p| p.tick_hz),
        record_hz: ds.map(|p| p.record_hz),
        repeat: plan.repeat,
        config_id: plan.config_id(),
        // -- issue 10: what a run records --
        sys_cpu_steal_s: m.sys_steal_s,
        noisy: m.noisy(),
        cpu_worker_s: m.role_cpu.map(|r| r.worker_s),
        cpu_pool_s: m.role_cpu.map(|r| r.pool_s),
        cpu_iowq_s: m.role_cpu.map(|r| r.iowq_s),
        cpu_sqpoll_s: m.role_cpu.map(|r| r.sqpoll_s),
        cpu_other_s: m.role_cpu.map(|r| r.other_s),
        ctx_voluntary: m.role_cpu.map(|r| r.ctx_voluntary),
        ctx_involuntary: m.role_cpu.map(|r| r.ctx_involuntary),
        mem_peak_rss_bytes: m.mem_peak_rss_bytes,
        mem_bytes_per_match: crate::machine::memory::bytes_per_match(
            m.mem_peak_rss_bytes,
            m.mem_start_rss_bytes,
            match &plan.workload {
                Workload::Ds { params, .. } => u64::from(params.matches),
                Workload::Micro(_) => 0,
            },
        ),
        disk_busy_ms: m.disk.map(|d| d.io_ms),
        disk_avg_queue_depth: m
            .disk
            .and_then(|d| crate::machine::disk::avg_queue_depth(&d, duration_s)),
        disk_write_amp: m
            .disk
            .and_then(|d| crate::machine::disk::write_amp(&d, stats.bytes)),
        offered_ops_per_s,
        not_completed: m.not_completed,
        stopped_early: m.stopped_early,
        // -- issue 10: histograms --
        ack_samples: ack.samples,
        io_write_samples: stats.hists[HistKind::IoWrite as usize].count(),
        io_sync_samples: stats.hists[HistKind::IoSync as usize].count(),
        io_read_samples: stats.hists[HistKind::IoRead as usize].count(),
        read_ttfb_samples: ttfb.samples,
        read_full_samples: full.samples,
        read_tail_samples: stats.hists[HistKind::ReadTail as usize].count(),
        worker_util: m.worker_util,
        // -- issue 11: harness, recorder and engine cost apart --
        ..cost_columns(m)
    }
}

/// The cost split of a DS run, µs of CPU per snapshot written (`stats.ops`, the denominator of
/// `cpu_us_per_op`): the harness (its timed work, the CPU of its sleeps, and the threads that
/// are neither workers nor engine helpers: the main thread's sampling and status line), the
/// recorder (its timed work), and the engine (the run's CPU minus both, never below 0), with the
/// work counters; `cpu_us_per_op_over_null` is filled in by the results folder.
fn cost_columns(m: &Measurement) -> SummaryRow {
    let Some(c) = m.costs else {
        return SummaryRow::default();
    };
    let ops = m.stats.ops;
    let per_op = |s: f64| (ops > 0).then(|| s * 1e6 / ops as f64);
    let other_s = m.role_cpu.map_or(0.0, |r| r.other_s);
    let harness_s = (c.harness_ns + c.sleep_cpu_ns) as f64 / 1e9 + other_s;
    let recorder_s = c.recorder_ns as f64 / 1e9;
    let total_s = m.cpu_user_s + m.cpu_sys_s;
    SummaryRow {
        harness_us_per_op: per_op(harness_s),
        recorder_us_per_op: per_op(recorder_s),
        engine_us_per_op: per_op((total_s - harness_s - recorder_s).max(0.0)),
        harness_sleep_us_per_op: per_op(c.sleep_cpu_ns as f64 / 1e9),
        snapshots_framed: Some(c.snapshots_framed),
        crc_bytes: Some(c.crc_bytes),
        copy_bytes: Some(c.copy_bytes),
        timers_fired: Some(c.timers_fired),
        hist_records: Some(c.hist_records),
        harness_sleeps: Some(c.sleeps),
        passes: Some(c.passes),
        ..SummaryRow::default()
    }
}

/// The timeseries.csv rows, each second marked as warm-up, measured or after the window.
fn timeseries(
    plan: &RunPlan,
    seconds: BTreeMap<u64, (u32, Tick)>,
    cpu: &BTreeMap<u64, SecondCpu>,
) -> Vec<TimeseriesRow> {
    seconds
        .into_iter()
        .map(|(sec, (_, t))| {
            let t0 = sec as f64;
            let phase = if t0 < plan.warmup_s {
                "warmup"
            } else if t0 < plan.warmup_s + plan.duration_s {
                "measured"
            } else {
                "after"
            };
            TimeseriesRow {
                run_id: plan.run_id.clone(),
                second: sec,
                phase,
                ops: t.ops,
                mib: t.bytes as f64 / (1u64 << 20) as f64,
                io_ops: t.io_ops,
                errors: t.errors,
                lat_p50_us: t.lat.quantile_us(0.5),
                lat_p99_us: t.lat.quantile_us(0.99),
                lat_max_us: t.lat.max_us(),
                max_lag_ms: t.max_lag_ns as f64 / 1e6,
                cpu_cores: cpu.get(&sec).map(|c| c.cpu_cores),
                sys_cpu_busy_cores: cpu.get(&sec).and_then(|c| c.sys_busy_cores),
                sys_cpu_steal_cores: cpu.get(&sec).and_then(|c| c.sys_steal_cores),
            }
        })
        .collect()
}

/// Sentences that explain what a reader of the row could misjudge.
fn notes(plan: &RunPlan, m: &Measurement, reads_active: bool, verified: bool) -> Vec<String> {
    let is_ds = matches!(plan.workload, Workload::Ds { .. });
    let mut notes = Vec::new();
    if is_ds && plan.writer.durability == Durability::None {
        notes.push("durability none: acks are not durable; not comparable between buffered and direct engines".to_string());
    }
    if m.saturated {
        notes.push(format!(
            "saturated: lag behind schedule reached {:.1} ms (limit {} ms); the engine could not keep up with the offered load",
            m.stats.max_lag_ns as f64 / 1e6,
            plan.writer.lag_limit_ms
        ));
    }
    if m.noisy() {
        notes.push(format!(
            "noisy: the hypervisor stole {:.2} s of CPU in the window ({:.0} % of busy + steal, over the 5 % limit); compare this run with care",
            m.sys_steal_s.unwrap_or(0.0),
            100.0 * m.sys_steal_s.unwrap_or(0.0)
                / (m.sys_busy_s.unwrap_or(0.0) + m.sys_steal_s.unwrap_or(0.0)).max(f64::MIN_POSITIVE)
        ));
    }
    if m.mem_peak_rss_bytes.is_none() {
        notes.push("peak memory unknown: /proc/self/clear_refs could not be written, so the run's VmHWM could not be reset".to_string());
    }
    if m.stopped_early {
        notes.push(format!(
            "stopped early: lag passed the {} ms limit before the window ended, so the run stopped; the rest of the window counts as not completed",
            plan.writer.lag_limit_ms
        ));
    }
    if m.not_completed > 0 {
        notes.push(format!(
            "{} snapshots intended in the window were not written when the {} s drain ended; each is in the write latency at its lower bound (drain end minus intended time)",
            m.not_completed, plan.drain_s
        ));
    }
    if reads_active && !verified {
        notes.push(format!(
            "replay reads not verified: engine {} does not store data (its reads return the buffer untouched)",
            plan.engine.name()
        ));
    }
    if m.stats.reads_dropped > 0 {
        notes.push(format!(
            "{} replay reads dropped: a worker's queue of waiting reads was full",
            m.stats.reads_dropped
        ));
    }
    // -- issue 10: prefill only when it serves --
    if let Some(n) = crate::driver::prefill_note(plan) {
        notes.push(n);
    }
    if reads_active
        && plan.engine.page_cache_reads()
        && m.prefill_matches > 0
        && m.page_cache_before_window.starts_with("not dropped")
    {
        notes.push("page cache: the prefill was written just before the window, so buffered reads of it are mostly served from memory".to_string());
    }
    notes
}

/// The nested detail of summary.json.
fn detail(
    plan: &RunPlan,
    m: &Measurement,
    reads_active: bool,
    verified: bool,
    notes: Vec<String>,
) -> serde_json::Value {
    let h = |k: HistKind| m.stats.hists[k as usize].summary();
    serde_json::json!({
        "options": plan.options_json(),
        "reads": {
            "active": reads_active,
            "verified": verified,
            "read_errors": m.read_error_msgs,
            "prefill": {
                "matches": m.prefill_matches,
                "bytes": m.prefill_bytes,
                "seconds": m.prefill_s,
                "from_corpus": plan.corpus,
            },
            "ttfb_us": h(HistKind::ReadTtfb),
            "full_us": h(HistKind::ReadFull),
            "tail_us": h(HistKind::ReadTail),
            "io_read_us": h(HistKind::IoRead),
            "tail_read_bytes": m.stats.tail_read_bytes,
        },
        "caps": m.caps,
        "latency_us": {
            "lat": h(HistKind::Lat),
            "ack": h(HistKind::Ack),
            "io_write": h(HistKind::IoWrite),
            "io_sync": h(HistKind::IoSync),
        },
        "disk": m.disk,
        "notes": notes,
        "io_wq_threads_at_end": m.io_wq_threads_at_end,
        "disk_irq_cpus": match &m.disk_irq_cpus {
            Some(c) => serde_json::json!(c),
            None => serde_json::json!("unknown"),
        },
        // -- issue 10: placement --
        "helper_placement": m.caps.as_ref().map(|c| c.helper_placement.clone()),
        // -- issue 10: micro --
        "page_cache": page_cache_json(plan, m),
    })
}

// -- issue 10: micro --
/// What a virtual machine's guest cannot drop: the host's own cache of the virtual disk.
pub const HOST_CACHE_NOTE: &str = "the host's own cache of a virtual disk (e.g. a qemu cache=writeback image) is beyond the guest's reach: neither fadvise nor drop_caches empties it";

/// The run's page-cache state for summary.json: what was done before the window
/// (`before_window`), whether each micro file was fsynced and advised DONTNEED after its layout
/// (`micro_file_invalidated`; null for DS runs) and the host-cache note.
fn page_cache_json(plan: &RunPlan, m: &Measurement) -> serde_json::Value {
    let micro = matches!(plan.workload, Workload::Micro(_));
    let invalidated = micro && m.caps.as_ref().is_some_and(|c| c.stores_data);
    serde_json::json!({
        "before_window": m.page_cache_before_window,
        "micro_file_invalidated": if micro { serde_json::json!(invalidated) } else { serde_json::Value::Null },
        "note": HOST_CACHE_NOTE,
    })
}
