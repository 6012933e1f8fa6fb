use std::time::Duration;

use criterion::Criterion;

/// Short runs when ACTOR_BENCH_QUICK is set (tests and demos); criterion's defaults otherwise.
fn config() -> Criterion {
    let quick_ms: Option<u64> = std::env::var("ACTOR_BENCH_QUICK").ok().and_then(|v| v.parse().ok());
    match quick_ms {
        Some(ms) => Criterion::default()
            .warm_up_time(Duration::from_millis(ms / 2 + 1))
            .measurement_time(Duration::from_millis(ms + 1))
            .sample_size(10),
        None => Criterion::default(),
    }
}

use actor_core::{ActiveScheduler, Scheduler};
use criterion::{black_box, criterion_group, criterion_main};

fn scheduler_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler");
    group.bench_function("schedule_to_run", |b| {
        let mut scheduler = ActiveScheduler::default();
        let mut actor = 0usize;
        b.iter(|| {
            actor = (actor + 1) % 97;
            scheduler.schedule(black_box(actor));
            black_box(scheduler.next_ready())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = scheduler_latency
}
criterion_main!(benches);
