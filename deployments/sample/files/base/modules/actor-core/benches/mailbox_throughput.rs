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

use actor_core::{drain, ActiveScheduler, Envelope, Mailbox};
use criterion::{black_box, criterion_group, criterion_main, Throughput};

fn mailbox_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("mailbox");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("throughput_1000", |b| {
        b.iter(|| {
            let mut mailbox = Mailbox::with_capacity(1000);
            for i in 0..1000u64 {
                mailbox.enqueue(Envelope { actor: (i % 97) as usize, payload: i });
            }
            let mut scheduler = ActiveScheduler::default();
            black_box(drain(&mut mailbox, &mut scheduler))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = mailbox_throughput
}
criterion_main!(benches);
