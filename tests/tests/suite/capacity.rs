//! The capacity model, bounded: ten seconds of the modeled peak (a million
//! owners with Zipf activity, 4,500 requests per second among them and one
//! tenant at 500) through the project's own key derivation. No partition key
//! of the table or its indexes may pass DynamoDB's per-partition limits.
//! `cargo xtask capacity` runs the full model for `docs/capacity.md`.

use bench::capacity::{simulate, Load, Place, PARTITION_READ_UNITS, PARTITION_WRITE_UNITS};

#[test]
fn no_partition_key_passes_the_per_partition_limits_at_the_modeled_peak() {
    let load = Load { seconds: 10, ..Load::default() };
    let report = simulate(&load);
    println!("{}", report.render(&load));
    assert_eq!(report.requests, 50_000);
    for (place, busiest) in &report.writes {
        assert!(busiest.per_second <= PARTITION_WRITE_UNITS, "{place:?}: {busiest:?}");
    }
    for (place, busiest) in &report.reads {
        assert!(busiest.per_second <= PARTITION_READ_UNITS, "{place:?}: {busiest:?}");
    }
    // The due index is sharded: its busiest key is one shard of one kind.
    let (_, due) = report.writes.iter().find(|(p, _)| *p == Place::ByDue).expect("due writes");
    assert!(due.key.starts_with("DUE#") && due.key.matches('#').count() == 2, "{due:?}");
    // The big tenant's usage item is the busiest item, well under 1,000/s.
    assert_eq!(report.busiest_item.key, "OWNER#owner-0");
    assert!(report.busiest_item.per_second < 1000.0, "{:?}", report.busiest_item);
    assert!(report.within_limits());
}
