//! Tests of the DS snapshot model: determinism, invariants and statistics.

use std::collections::HashMap;

use super::*;

const S: u64 = 1_000_000_000;

fn collect(p: &DsParams, seed: u64, worker: u32, workers: u32, horizon_ns: u64) -> Vec<DsEvent> {
    DsSchedule::new(p, seed, worker, workers, horizon_ns).collect()
}

/// Small, fast-turnover parameters: many starts and ends within a few seconds.
fn churn() -> DsParams {
    DsParams {
        matches: 40,
        record_hz: 8.0,
        time_scale: 600.0, // 35 min → 3.5 s
        ..DsParams::default()
    }
}

fn deltas(events: &[DsEvent]) -> impl Iterator<Item = u32> + '_ {
    events.iter().filter_map(|e| match *e {
        DsEvent::Snapshot {
            kind: SnapKind::Delta,
            payload_bytes,
            ..
        } => Some(payload_bytes),
        _ => None,
    })
}

/// Per-match view of a schedule.
#[derive(Default, Debug)]
struct Track {
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    /// (seq, t_ns, kind, payload_bytes) in schedule order.
    snaps: Vec<(u64, u64, SnapKind, u32)>,
}

fn tracks(events: &[DsEvent]) -> HashMap<u64, Track> {
    let mut m: HashMap<u64, Track> = HashMap::new();
    for e in events {
        let t = m.entry(e.match_id()).or_default();
        match *e {
            DsEvent::Start { t_ns, .. } => t.start_ns = Some(t_ns),
            DsEvent::End { t_ns, .. } => t.end_ns = Some(t_ns),
            DsEvent::Snapshot {
                seq,
                t_ns,
                kind,
                payload_bytes,
                ..
            } => t.snaps.push((seq, t_ns, kind, payload_bytes)),
        }
    }
    m
}

/// Every structural property a schedule must have; panics with a description otherwise.
fn check_invariants(p: &DsParams, events: &[DsEvent], horizon_ns: u64) {
    let keyframe_every = ((p.keyframe_s * p.record_hz).round() as u64).max(1);
    let mut prev_t = 0;
    let mut last_started = 0;
    let mut state: HashMap<u64, (u64, bool)> = HashMap::new(); // id → (next seq, ended)
    for (i, e) in events.iter().enumerate() {
        let t = e.t_ns();
        assert!(
            t >= prev_t,
            "event {i} {e:?} goes back in time from {prev_t}"
        );
        assert!(t < horizon_ns, "event {i} {e:?} at or after the horizon");
        prev_t = t;
        let id = e.match_id();
        match *e {
            DsEvent::Start { .. } => {
                assert!(
                    id > last_started,
                    "match {id} started after match {last_started}"
                );
                last_started = id;
                assert!(
                    state.insert(id, (0, false)).is_none(),
                    "match {id} started twice"
                );
            }
            DsEvent::Snapshot {
                seq,
                kind,
                payload_bytes,
                ..
            } => {
                let st = state.get_mut(&id).expect("snapshot before Start");
                assert!(!st.1, "match {id}: snapshot after End");
                assert_eq!(seq, st.0, "match {id}: seq gap");
                st.0 += 1;
                let want = if seq % keyframe_every == 0 {
                    SnapKind::Keyframe
                } else {
                    SnapKind::Delta
                };
                assert_eq!(kind, want, "match {id} seq {seq}");
                if kind == SnapKind::Keyframe {
                    assert_eq!(payload_bytes, p.keyframe_bytes);
                }
                assert!((MIN_PAYLOAD_BYTES..=MAX_PAYLOAD_BYTES).contains(&payload_bytes));
            }
            DsEvent::End { .. } => {
                let st = state.get_mut(&id).expect("End before Start");
                assert!(!st.1, "match {id} ended twice");
                st.1 = true;
            }
        }
    }
}

fn assert_close(what: &str, got: f64, want: f64, rel_tol: f64) {
    assert!(
        (got - want).abs() <= rel_tol * want.abs(),
        "{what}: got {got}, want {want} ± {:.1} %",
        rel_tol * 100.0
    );
}

// ---------------------------------------------------------------- determinism

#[test]
fn same_seed_same_schedule_different_seed_different() {
    let p = churn();
    let a = collect(&p, 7, 0, 1, 20 * S);
    let b = collect(&p, 7, 0, 1, 20 * S);
    let c = collect(&p, 8, 0, 1, 20 * S);
    assert!(a.len() > 1000);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

fn assert_union_matches_single(p: &DsParams, workers: u32, horizon_ns: u64) {
    let single = collect(p, 99, 0, 1, horizon_ns);
    let mut union: Vec<DsEvent> = Vec::new();
    for w in 0..workers {
        let part = collect(p, 99, w, workers, horizon_ns);
        assert!(
            part.iter()
                .all(|e| (e.match_id() - 1) % u64::from(workers) == u64::from(w)),
            "worker {w} produced another worker's match"
        );
        union.extend(part);
    }
    // Each match lives in one worker, so a stable sort keeps every match's own order.
    union.sort_by_key(|e| (e.t_ns(), e.match_id()));
    assert_eq!(union.len(), single.len());
    assert_eq!(union, single);
}

#[test]
fn union_of_workers_equals_one_worker() {
    assert_union_matches_single(&churn(), 3, 20 * S);
    let batched = DsParams {
        batch_s: 0.5,
        arrivals: Arrivals::Herd,
        shrink: true,
        ..churn()
    };
    assert_union_matches_single(&batched, 3, 20 * S);
    assert_union_matches_single(&batched, 7, 20 * S);
}

#[test]
fn peek_agrees_with_next() {
    let mut s = DsSchedule::new(&churn(), 3, 1, 2, 10 * S);
    let mut n = 0;
    loop {
        let peeked = s.peek_t_ns();
        let e = s.next_event();
        assert_eq!(peeked, e.map(|e| e.t_ns()));
        if e.is_none() {
            break;
        }
        n += 1;
    }
    assert!(n > 100);
    assert_eq!(s.next(), None, "fused");
}

// ---------------------------------------------------------------- invariants

#[test]
fn invariants_hold_across_settings() {
    let mut cases: Vec<DsParams> = vec![
        churn(),
        DsParams {
            batch_s: 1.0,
            ..churn()
        },
        DsParams {
            batch_s: 0.05,
            record_hz: 64.0,
            ..churn()
        },
        DsParams {
            arrivals: Arrivals::Herd,
            shrink: true,
            ..churn()
        },
        DsParams {
            keyframe_s: 0.01,
            ..churn()
        }, // every snapshot a keyframe
        DsParams {
            time_scale: 100_000.0,
            ..churn()
        }, // matches shorter than a tick
    ];
    for name in PRESETS {
        let mut p = DsParams::preset(name).unwrap();
        p.matches = p.matches.min(64);
        p.time_scale = 300.0;
        cases.push(p);
    }
    for p in &cases {
        let horizon = 15 * S;
        let events = collect(p, 5, 0, 1, horizon);
        assert!(!events.is_empty());
        check_invariants(p, &events, horizon);
        let ends = events
            .iter()
            .filter(|e| matches!(e, DsEvent::End { .. }))
            .count();
        assert!(ends > 0, "no match ended: {p:?}");
    }
}

#[test]
fn initial_population_starts_at_zero_with_ids_1_to_matches() {
    let p = DsParams {
        matches: 50,
        ..DsParams::default()
    };
    let events = collect(&p, 1, 0, 1, S);
    let starts: Vec<u64> = events
        .iter()
        .filter_map(|e| match *e {
            DsEvent::Start { match_id, t_ns } => {
                assert_eq!(t_ns, 0);
                Some(match_id)
            }
            _ => None,
        })
        .collect();
    assert_eq!(starts, (1..=50).collect::<Vec<u64>>());
}

#[test]
fn zero_horizon_is_empty_and_running_matches_get_no_end() {
    assert_eq!(collect(&churn(), 1, 0, 1, 0).len(), 0);
    // Matches last ≥ 10 min at time_scale 1: none ends within 1 s under herd.
    let p = DsParams {
        arrivals: Arrivals::Herd,
        ..DsParams::default()
    };
    let events = collect(&p, 1, 0, 1, S);
    assert!(events.iter().all(|e| !matches!(e, DsEvent::End { .. })));
}

#[test]
fn end_follows_last_snapshot() {
    let p = DsParams {
        batch_s: 0.7,
        ..churn()
    };
    let events = collect(&p, 11, 0, 1, 30 * S);
    let mut ended = 0;
    for (id, tr) in tracks(&events) {
        let start = tr.start_ns.unwrap();
        if let Some(end) = tr.end_ns {
            ended += 1;
            assert!(end >= start);
            if let Some(&(_, t, _, _)) = tr.snaps.last() {
                assert!(t <= end, "match {id}: snapshot at {t} after End at {end}");
            }
        }
        assert!(tr.snaps.iter().all(|&(_, t, _, _)| t >= start));
    }
    assert!(ended > 100);
}

#[test]
fn random_ages_end_initial_matches_early_but_herd_does_not() {
    // time_scale 60: durations 10..=120 min become 10..=120 s.
    let base = DsParams {
        matches: 200,
        record_hz: 1.0,
        time_scale: 60.0,
        ..DsParams::default()
    };
    let early_ends = |p: &DsParams| {
        collect(p, 4, 0, 1, 130 * S)
            .iter()
            .filter(|e| matches!(e, DsEvent::End { match_id, t_ns } if *match_id <= 200 && *t_ns < 10 * S))
            .count()
    };
    // With uniform ages, about 200 · E[10 s / D] ≈ 60 initial matches end in the first 10 s.
    assert!(early_ends(&base) > 20);
    assert_eq!(
        early_ends(&DsParams {
            arrivals: Arrivals::Herd,
            ..base
        }),
        0
    );
}

// ---------------------------------------------------------------- statistics

/// ≥ 100 000 delta sizes at the given mean and CV, bursts off, herd (no turnover).
fn delta_sizes(mean: f64, cv: f64) -> Vec<u32> {
    let p = DsParams {
        matches: 200,
        record_hz: 64.0,
        snapshot_bytes: mean,
        snapshot_cv: cv,
        burst_fraction: 0.0,
        arrivals: Arrivals::Herd,
        ..DsParams::default()
    };
    let sizes: Vec<u32> = deltas(&collect(&p, 21, 0, 1, 10 * S)).collect();
    assert!(sizes.len() >= 100_000, "only {} samples", sizes.len());
    sizes
}

fn mean(xs: &[u32]) -> f64 {
    xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64
}

#[test]
fn delta_mean_size_matches_snapshot_bytes() {
    for (m, cv) in [(1700.0, 0.8), (800.0, 0.8), (2800.0, 0.6)] {
        let sizes = delta_sizes(m, cv);
        assert_close(&format!("mean delta at {m}/{cv}"), mean(&sizes), m, 0.05);
        // The spread is really there: the sample CV is near the target.
        let mu = mean(&sizes);
        let var = sizes
            .iter()
            .map(|&x| (f64::from(x) - mu).powi(2))
            .sum::<f64>()
            / sizes.len() as f64;
        assert_close(&format!("cv at {m}/{cv}"), var.sqrt() / mu, cv, 0.10);
    }
}

#[test]
fn zero_cv_gives_constant_size() {
    let sizes = delta_sizes(1234.4, 0.0);
    assert!(sizes.iter().all(|&s| s == 1234));
}

#[test]
fn sizes_are_clamped() {
    let p = DsParams {
        matches: 50,
        snapshot_bytes: 500.0,
        snapshot_cv: 3.0,
        snapshot_min_bytes: 100,
        snapshot_max_bytes: 2000,
        burst_fraction: 0.0,
        ..DsParams::default()
    };
    let sizes: Vec<u32> = deltas(&collect(&p, 2, 0, 1, 5 * S)).collect();
    assert!(sizes.iter().all(|s| (100..=2000).contains(s)));
    assert!(
        sizes.contains(&100) && sizes.contains(&2000),
        "clamps never reached"
    );
}

#[test]
fn burst_fraction_and_factor() {
    let p = DsParams {
        matches: 200,
        snapshot_bytes: 1000.0,
        snapshot_cv: 0.0,
        burst_fraction: 0.05,
        burst_factor: 20.0,
        arrivals: Arrivals::Herd,
        ..DsParams::default()
    };
    let sizes: Vec<u32> = deltas(&collect(&p, 8, 0, 1, 10 * S)).collect();
    assert!(sizes.len() >= 100_000);
    assert!(sizes.iter().all(|&s| s == 1000 || s == 20_000));
    let bursts = sizes.iter().filter(|&&s| s == 20_000).count();
    // p = 0.05 over ~128 000 samples: SD ≈ 0.0006; allow 0.004.
    let frac = bursts as f64 / sizes.len() as f64;
    assert!((frac - 0.05).abs() < 0.004, "burst fraction {frac}");
}

#[test]
fn bursts_are_capped_at_max_payload() {
    let p = DsParams {
        matches: 2,
        snapshot_bytes: f64::from(8 << 20),
        snapshot_cv: 0.0,
        snapshot_max_bytes: MAX_PAYLOAD_BYTES,
        burst_fraction: 1.0,
        burst_factor: 4.0,
        ..DsParams::default()
    };
    let sizes: Vec<u32> = deltas(&collect(&p, 1, 0, 1, S)).collect();
    assert!(!sizes.is_empty());
    assert!(sizes.iter().all(|&s| s == MAX_PAYLOAD_BYTES));
}

#[test]
fn snapshot_rate_per_match_is_record_hz() {
    for hz in [30.0, 17.5, 128.0] {
        let p = DsParams {
            matches: 400,
            tick_hz: 128.0,
            record_hz: hz,
            arrivals: Arrivals::Herd,
            ..DsParams::default()
        };
        let horizon_s = 15;
        let events = collect(&p, 3, 0, 1, horizon_s * S);
        let per_match = hz * horizon_s as f64;
        // The initial population runs through the whole horizon (matches last ≥ 10 min);
        // matches arriving later are left out.
        let mut total = 0;
        for (id, tr) in tracks(&events).into_iter().filter(|(id, _)| *id <= 400) {
            let n = tr.snaps.len() as f64;
            assert!(
                (n - per_match).abs() <= 1.0,
                "match {id}: {n} snapshots, want {per_match}"
            );
            total += tr.snaps.len();
        }
        assert!(total >= 100_000);
        assert_close(
            "snapshot rate",
            total as f64 / 400.0 / horizon_s as f64,
            hz,
            0.05,
        );
        assert_close("snapshots_per_s", p.snapshots_per_s(), 400.0 * hz, 1e-12);
    }
}

#[test]
fn poisson_arrivals_keep_the_population() {
    // Mean duration 35 min / 2100 = 1 s: 200 arrivals a second.
    let p = DsParams {
        matches: 200,
        record_hz: 1.0,
        time_scale: 2100.0,
        ..DsParams::default()
    };
    assert_close("arrival rate", p.match_arrivals_per_s(), 200.0, 1e-12);
    let horizon_s = 60;
    let events = collect(&p, 17, 0, 1, horizon_s * S);
    check_invariants(&p, &events, horizon_s * S);
    let tr = tracks(&events);
    let arrivals = tr.keys().filter(|&&id| id > 200).count();
    // Poisson(12 000): SD ≈ 110; allow 4 % (≈ 4.4 SD).
    assert_close("arrivals", arrivals as f64, 12_000.0, 0.04);
    // Ids are dense: every id up to the last one started.
    assert_eq!(tr.keys().max().copied(), Some(tr.len() as u64));
    // Little's law: the live population averages ≈ matches once the initial one has turned over.
    let spans: Vec<(u64, u64)> = tr
        .values()
        .map(|t| (t.start_ns.unwrap(), t.end_ns.unwrap_or(u64::MAX)))
        .collect();
    let samples: Vec<f64> = (20..=240)
        .map(|q| q * S / 4)
        .map(|t| spans.iter().filter(|&&(a, b)| a <= t && t < b).count() as f64)
        .collect();
    let avg = samples.iter().sum::<f64>() / samples.len() as f64;
    assert_close("live population", avg, 200.0, 0.10);
}

#[test]
fn keyframes_are_spaced_keyframe_s() {
    let p = DsParams {
        matches: 10,
        record_hz: 32.0,
        keyframe_s: 2.0,
        keyframe_bytes: 100_000,
        arrivals: Arrivals::Herd,
        ..DsParams::default()
    };
    let events = collect(&p, 6, 0, 1, 20 * S);
    check_invariants(&p, &events, 20 * S);
    for (id, tr) in tracks(&events) {
        assert_eq!(
            tr.snaps[0].2,
            SnapKind::Keyframe,
            "match {id}: first snapshot not a keyframe"
        );
        let keys: Vec<u64> = tr
            .snaps
            .iter()
            .filter(|s| s.2 == SnapKind::Keyframe)
            .map(|s| s.1)
            .collect();
        assert_eq!(keys.len(), 10, "match {id}");
        for w in keys.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap.abs_diff(2 * S) <= 1,
                "match {id}: keyframes {gap} ns apart"
            );
        }
        assert!(tr
            .snaps
            .iter()
            .all(|s| (s.2 == SnapKind::Keyframe) == (s.3 == 100_000)));
    }
}

#[test]
fn batches_arrive_whole_at_one_time() {
    // 20 Hz, 3 s batches: 60 snapshots per send; matches of 5..=60 s.
    let p = DsParams {
        matches: 30,
        record_hz: 20.0,
        batch_s: 3.0,
        time_scale: 120.0,
        ..DsParams::default()
    };
    let horizon = 60 * S;
    let events = collect(&p, 12, 0, 1, horizon);
    check_invariants(&p, &events, horizon);
    let mut inner_batches = 0;
    for (id, tr) in tracks(&events) {
        // Group the match's snapshots by arrival time.
        let mut groups: Vec<(u64, usize)> = Vec::new();
        for &(_, t, _, _) in &tr.snaps {
            match groups.last_mut() {
                Some((gt, n)) if *gt == t => *n += 1,
                _ => groups.push((t, 1)),
            }
        }
        let end = tr.end_ns;
        for (i, w) in groups.windows(2).enumerate() {
            let (t0, t1) = (w[0].0, w[1].0);
            if Some(t1) != end {
                assert!(
                    t1.abs_diff(t0 + 3 * S) <= 1,
                    "match {id}: sends at {t0} and {t1}"
                );
            } else {
                assert!(t1 - t0 <= 3 * S);
            }
            if i > 0 {
                // Neither the first send (random phase) nor the final one.
                inner_batches += 1;
                assert!(
                    (59..=61).contains(&w[0].1),
                    "match {id}: batch of {}",
                    w[0].1
                );
            }
        }
    }
    assert!(inner_batches > 100);
}

#[test]
fn shrink_reduces_sizes_over_the_match() {
    assert_eq!(shrink_factor(0.0), 1.0);
    assert_eq!(shrink_factor(0.5), 0.5);
    assert_eq!(shrink_factor(0.99), 0.05);
    assert_eq!(shrink_factor(2.0), 0.05);
    let p = DsParams {
        matches: 8,
        record_hz: 20.0,
        snapshot_bytes: 8192.0,
        snapshot_cv: 0.0,
        burst_fraction: 0.0,
        shrink: true,
        arrivals: Arrivals::Herd,
        time_scale: 60.0,
        ..DsParams::default()
    };
    let events = collect(&p, 1, 0, 1, 130 * S);
    let mut ended = 0;
    for tr in tracks(&events)
        .values()
        .filter(|t| t.start_ns == Some(0) && t.end_ns.is_some())
    {
        ended += 1;
        let sizes: Vec<u32> = tr
            .snaps
            .iter()
            .filter(|s| s.2 == SnapKind::Delta)
            .map(|s| s.3)
            .collect();
        assert!(sizes[0] > 8100, "first delta {}", sizes[0]);
        assert!(sizes.windows(2).all(|w| w[1] <= w[0]), "not shrinking");
        let last = *sizes.last().unwrap();
        assert!(
            (400..=420).contains(&last),
            "last delta {last} (5 % of 8192 = 410)"
        );
    }
    assert_eq!(ended, 8);
}

// ---------------------------------------------------------------- parameters

#[test]
fn defaults_and_presets_validate() {
    assert_eq!(DsParams::default().validate(), Ok(()));
    assert_eq!(PRESETS[0], "fps-128tick");
    assert_eq!(PRESETS.len(), 4);
    for name in PRESETS {
        let p = DsParams::preset(name).unwrap_or_else(|| panic!("preset {name} missing"));
        assert_eq!(p.validate(), Ok(()), "preset {name}");
    }
    assert_eq!(DsParams::preset("fps"), None);
    let fps = DsParams::preset("fps-128tick").unwrap();
    assert_eq!(
        (fps.record_hz, fps.snapshot_bytes, fps.keyframe_bytes),
        (128.0, 800.0, 48 * 1024)
    );
    assert_eq!(
        (fps.match_minutes, fps.match_minutes_sd, fps.matches),
        (40.0, 10.0, 256)
    );
    let br = DsParams::preset("battle-royale-100p").unwrap();
    assert!(br.shrink && br.matches == 64 && br.keyframe_bytes == 1 << 20 && br.keyframe_s == 30.0);
    assert_eq!(br.burst_factor, 10.0);
    let moba = DsParams::preset("moba-30tick").unwrap();
    assert_eq!(
        (moba.record_hz, moba.snapshot_cv, moba.keyframe_bytes),
        (30.0, 0.6, 256 * 1024)
    );
}

#[test]
fn validate_rejects_out_of_range_values_naming_the_field() {
    type Mutate = fn(&mut DsParams);
    let cases: &[(&str, Mutate)] = &[
        ("matches", |p| p.matches = 0),
        ("matches", |p| p.matches = 100_001),
        ("tick_hz", |p| p.tick_hz = 7.0),
        ("tick_hz", |p| p.tick_hz = f64::NAN),
        ("record_hz", |p| p.record_hz = 0.0),
        ("record_hz", |p| p.record_hz = 65.0),
        ("batch_s", |p| p.batch_s = -1.0),
        ("snapshot_bytes", |p| p.snapshot_bytes = 70_000.0),
        ("snapshot_bytes", |p| p.snapshot_bytes = f64::INFINITY),
        ("snapshot_cv", |p| p.snapshot_cv = -0.1),
        ("snapshot_min_bytes", |p| p.snapshot_min_bytes = 15),
        ("snapshot_min_bytes", |p| p.snapshot_min_bytes = 70_000),
        ("snapshot_max_bytes", |p| {
            p.snapshot_max_bytes = MAX_PAYLOAD_BYTES + 1
        }),
        ("burst_fraction", |p| p.burst_fraction = 1.5),
        ("burst_factor", |p| p.burst_factor = 0.5),
        ("keyframe_s", |p| p.keyframe_s = 0.0),
        ("keyframe_bytes", |p| p.keyframe_bytes = 8),
        ("match_minutes", |p| p.match_minutes = 5.0),
        ("match_minutes_sd", |p| p.match_minutes_sd = -1.0),
        ("match_minutes_min", |p| p.match_minutes_min = 0.0),
        ("match_minutes_max", |p| p.match_minutes_max = 9.0),
        ("time_scale", |p| p.time_scale = 0.0),
        ("time_scale", |p| p.time_scale = f64::NAN),
    ];
    for (field, mutate) in cases {
        let mut p = DsParams::default();
        mutate(&mut p);
        let err = p.validate().expect_err(field);
        assert!(err.starts_with(&format!("{field} ")), "{field}: {err}");
        assert!(err.contains("range"), "{field}: {err}");
    }
}

#[test]
fn try_new_rejects_bad_arguments() {
    let p = churn();
    assert!(DsSchedule::try_new(&p, 1, 0, 1, S).is_ok());
    let err = DsSchedule::try_new(&p, 1, 3, 3, S).unwrap_err();
    assert!(err.starts_with("worker 3"), "{err}");
    assert!(DsSchedule::try_new(&p, 1, 0, 0, S).is_err());
    let bad = DsParams { tick_hz: 0.0, ..p };
    assert!(DsSchedule::try_new(&bad, 1, 0, 1, S)
        .unwrap_err()
        .starts_with("tick_hz"));
}

#[test]
#[should_panic(expected = "worker 2")]
fn new_panics_on_bad_worker() {
    let _ = DsSchedule::new(&churn(), 1, 2, 2, S);
}

#[test]
fn params_serde_round_trip_and_defaults() {
    let p = DsParams::preset("battle-royale-100p").unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<DsParams>(&json).unwrap(), p);
    let partial: DsParams = serde_json::from_str(r#"{"matches": 9, "arrivals": "herd"}"#).unwrap();
    assert_eq!(
        partial,
        DsParams {
            matches: 9,
            arrivals: Arrivals::Herd,
            ..DsParams::default()
        }
    );
    assert_eq!(
        serde_json::to_string(&Arrivals::Poisson).unwrap(),
        "\"poisson\""
    );
}

#[test]
fn event_accessors() {
    let e = DsEvent::Snapshot {
        match_id: 3,
        seq: 4,
        t_ns: 5,
        kind: SnapKind::Delta,
        payload_bytes: 16,
    };
    assert_eq!((e.t_ns(), e.match_id()), (5, 3));
    let e = DsEvent::End {
        match_id: 8,
        t_ns: 9,
    };
    assert_eq!((e.t_ns(), e.match_id()), (9, 8));
    assert_eq!(SnapKind::Keyframe as u32, 1);
}

#[test]
fn match_snapshots_follow_the_model() {
    let p = DsParams::preset("fps-128tick").unwrap();
    let a: Vec<MatchSnapshot> = MatchSnapshots::new(&p, 3, 77)
        .unwrap()
        .take(20_000)
        .collect();
    let b: Vec<MatchSnapshot> = MatchSnapshots::new(&p, 3, 77)
        .unwrap()
        .take(20_000)
        .collect();
    assert_eq!(a, b, "seeded");
    let every = (p.keyframe_s * p.record_hz).round() as u64;
    for (i, s) in a.iter().enumerate() {
        assert_eq!(s.seq, i as u64);
        let key = s.seq % every == 0;
        assert_eq!(s.kind == SnapKind::Keyframe, key);
        if key {
            assert_eq!(s.payload_bytes, p.keyframe_bytes);
        }
    }
    let period = 1e9 / p.record_hz;
    assert!(a[0].t_ns < period as u64);
    let span = (a[19_999].t_ns - a[0].t_ns) as f64;
    assert!((span - 19_999.0 * period).abs() < 2.0, "{span}");
    let mean = a
        .iter()
        .filter(|s| s.kind == SnapKind::Delta)
        .map(|s| f64::from(s.payload_bytes))
        .sum::<f64>()
        / a.iter().filter(|s| s.kind == SnapKind::Delta).count() as f64;
    // 800 B mean with 2 % bursts × 8 (≈ ×1.14), loosely.
    assert!((800.0..1100.0).contains(&mean), "{mean}");
    // A compressed match ends: every snapshot lies before its duration.
    let short = DsParams {
        time_scale: 600.0,
        ..p
    };
    let m = MatchSnapshots::new(&short, 3, 77).unwrap();
    let d = m.duration_ns();
    let all: Vec<MatchSnapshot> = m.collect();
    assert!(!all.is_empty() && all.iter().all(|s| s.t_ns < d));
}

/// The generator as it was before the heap's top was replaced in place (issue 11): one pop
/// and one push per event. The schedule must not change by a single event.
fn next_event_pop_push(s: &mut DsSchedule) -> Option<DsEvent> {
    let Reverse((t_ns, match_id, mut slot)) = s.heap.pop()?;
    if slot == ARRIVAL_SLOT {
        slot = s.spawn(match_id, t_ns, false);
        s.push_next_arrival();
    }
    // `emit`: the event, then the match's next one pushed (or its slot freed).
    Some(s.emit(slot, t_ns, match_id))
}

#[test]
fn replacing_the_heap_top_keeps_the_schedule_event_for_event() {
    let mut batched = DsParams::preset("fps-128tick").unwrap();
    batched.matches = 64;
    batched.batch_s = 0.05;
    let mut herd = churn();
    herd.arrivals = Arrivals::Herd;
    let cases = [
        (churn(), 1, 8 * S),
        (churn(), 3, 8 * S),
        (herd, 2, 8 * S),
        (batched, 2, S),
        (DsParams::preset("moba-30tick").unwrap(), 1, 2 * S),
    ];
    for (p, workers, horizon) in cases {
        for worker in 0..workers {
            let new: Vec<DsEvent> = collect(&p, 7, worker, workers, horizon);
            let mut s = DsSchedule::new(&p, 7, worker, workers, horizon);
            let old: Vec<DsEvent> = std::iter::from_fn(|| next_event_pop_push(&mut s)).collect();
            assert!(new.len() > 100, "{} events", new.len());
            assert!(new.iter().any(|e| matches!(e, DsEvent::End { .. })) || p.time_scale < 2.0);
            assert_eq!(new, old, "worker {worker} of {workers}");
        }
    }
}
