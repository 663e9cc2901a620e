//! The capacity model: drives a modeled peak of traffic through the
//! project's own key derivation (`shared::store::layout`) and counts, second
//! by second, the writes and reads each partition key of the table and of
//! each index receives, and the transactions each item takes part in. The
//! busiest of each is held against DynamoDB's published per-partition
//! limits (1,000 write units and 3,000 read units per second), and the
//! request units of the whole run give the on-demand cost per million
//! uploads.
//!
//! What each operation does to the table is written down once, in
//! `Model::request`, from the code paths of the functions (a strongly
//! consistent read is 1 read unit, a transactional write 2 write units per
//! item, an index entry written, changed or removed 1 write unit on that
//! index).

use std::collections::HashMap;
use std::fmt::Write as _;

use shared::domain::{ApiKey, OwnerId, UploadId};
use shared::store::layout::{self, DUE_CLEANUP, DUE_PENDING};

use crate::rng::Rng;

/// DynamoDB's per-partition limits (per second).
pub const PARTITION_WRITE_UNITS: f64 = 1000.0;
pub const PARTITION_READ_UNITS: f64 = 3000.0;
/// On-demand prices, us-east-1, per million request units.
pub const PRICE_PER_MILLION_WRITES: f64 = 0.625;
pub const PRICE_PER_MILLION_READS: f64 = 0.125;

/// The modeled load.
#[derive(Debug, Clone)]
pub struct Load {
    pub owners: u64,
    /// Zipf exponent of the owners' activity.
    pub zipf: f64,
    /// Requests per second over all owners but the big tenant.
    pub rate: u64,
    /// Requests per second of the one big tenant.
    pub tenant_rate: u64,
    /// Seconds of peak traffic simulated.
    pub seconds: u64,
}

impl Default for Load {
    fn default() -> Self {
        Load { owners: 1_000_000, zipf: 1.0, rate: 4_500, tenant_rate: 500, seconds: 60 }
    }
}

/// Where a unit of work lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    Table,
    ByOwner,
    ByDue,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::Table => "table",
            Place::ByOwner => "by_owner index",
            Place::ByDue => "by_due index",
        }
    }
}

/// The busiest partition key of one place, over the run.
#[derive(Debug, Clone, Default)]
pub struct Busiest {
    pub key: String,
    pub per_second: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub requests: u64,
    pub uploads: u64,
    pub write_units: f64,
    pub read_units: f64,
    /// Per place: busiest key by write units and by read units per second.
    pub writes: Vec<(Place, Busiest)>,
    pub reads: Vec<(Place, Busiest)>,
    /// The item in the most transactions in one second.
    pub busiest_item: Busiest,
    /// The most `by_due` writes in one second over all shards: what one
    /// unsharded due key would have taken.
    pub due_writes_unsharded: f64,
}

impl Report {
    pub fn dollars_per_million_uploads(&self) -> f64 {
        let per_upload_w = self.write_units / self.uploads.max(1) as f64;
        let per_upload_r = self.read_units / self.uploads.max(1) as f64;
        per_upload_w * PRICE_PER_MILLION_WRITES + per_upload_r * PRICE_PER_MILLION_READS
    }

    /// Every busiest key within the per-partition limits.
    pub fn within_limits(&self) -> bool {
        self.writes.iter().all(|(_, b)| b.per_second <= PARTITION_WRITE_UNITS)
            && self.reads.iter().all(|(_, b)| b.per_second <= PARTITION_READ_UNITS)
    }

    pub fn render(&self, load: &Load) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "load: {} owners (Zipf s={}), {} req/s spread over them + one tenant at {} req/s, {} s of peak simulated",
            load.owners, load.zipf, load.rate, load.tenant_rate, load.seconds
        );
        let _ = writeln!(out, "requests: {}, uploads created: {}", self.requests, self.uploads);
        for (place, b) in &self.writes {
            let _ = writeln!(
                out,
                "busiest {} key by writes: {} at {:.0} WCU/s (limit {:.0}, {:.0} %)",
                place.name(),
                b.key,
                b.per_second,
                PARTITION_WRITE_UNITS,
                100.0 * b.per_second / PARTITION_WRITE_UNITS
            );
        }
        for (place, b) in &self.reads {
            let _ = writeln!(
                out,
                "busiest {} key by reads: {} at {:.0} RCU/s (limit {:.0}, {:.0} %)",
                place.name(),
                b.key,
                b.per_second,
                PARTITION_READ_UNITS,
                100.0 * b.per_second / PARTITION_READ_UNITS
            );
        }
        let _ = writeln!(
            out,
            "by_due writes of all shards together: {:.0} WCU/s ({:.0} % of one partition's limit: what a single due key would take)",
            self.due_writes_unsharded,
            100.0 * self.due_writes_unsharded / PARTITION_WRITE_UNITS
        );
        let _ = writeln!(
            out,
            "busiest item in transactions: {} at {:.0} transactions/s",
            self.busiest_item.key, self.busiest_item.per_second
        );
        let per_upload_w = self.write_units / self.uploads.max(1) as f64;
        let per_upload_r = self.read_units / self.uploads.max(1) as f64;
        let _ = writeln!(
            out,
            "per upload (all traffic divided by uploads created): {per_upload_w:.1} write units, {per_upload_r:.1} read units"
        );
        let _ = writeln!(
            out,
            "on-demand cost: ${:.2} per million uploads (at ${PRICE_PER_MILLION_WRITES}/M writes, ${PRICE_PER_MILLION_READS}/M reads)",
            self.dollars_per_million_uploads()
        );
        let _ = writeln!(out, "within per-partition limits: {}", self.within_limits());
        out
    }
}

/// A random upload id from the model's generator (the same run every time).
fn upload_id(rng: &mut Rng) -> UploadId {
    UploadId::parse(&format!("upl_{:016x}{:016x}", rng.next(), rng.next())).expect("generated ids are well-formed")
}

/// One second's counts.
#[derive(Default)]
struct Second {
    writes: HashMap<(Place, String), f64>,
    reads: HashMap<(Place, String), f64>,
    transactions: HashMap<String, f64>,
}

impl Second {
    fn write(&mut self, place: Place, key: String, units: f64) {
        *self.writes.entry((place, key)).or_default() += units;
    }

    fn read(&mut self, place: Place, key: String, units: f64) {
        *self.reads.entry((place, key)).or_default() += units;
    }
}

/// Keeps, per place, the key with the most units in one second.
fn keep_busiest(second: HashMap<(Place, String), f64>, best: &mut HashMap<Place, Busiest>) -> f64 {
    let mut total = 0.0;
    for ((place, key), units) in second {
        total += units;
        let b = best.entry(place).or_default();
        if units > b.per_second {
            *b = Busiest { key, per_second: units };
        }
    }
    total
}

/// A session the model remembers, to confirm or delete later.
#[derive(Clone)]
struct Open {
    id: UploadId,
    completed: bool,
}

/// Sessions remembered per owner at most (the oldest are forgotten).
const REMEMBERED: usize = 20;

struct Model {
    rng: Rng,
    cdf: Vec<f64>,
    owners: Vec<Option<(OwnerId, String)>>,
    open: HashMap<usize, Vec<Open>>,
    report: Report,
}

impl Model {
    fn owner(&mut self, index: usize) -> (OwnerId, String) {
        if self.owners[index].is_none() {
            let owner = OwnerId::parse(&format!("owner-{index}")).expect("valid owner");
            let key_pk = layout::api_key_pk(ApiKey::generate().digest().as_str());
            self.owners[index] = Some((owner, key_pk));
        }
        self.owners[index].clone().expect("just set")
    }

    /// An owner drawn from the Zipf distribution (index 0 is the big tenant).
    fn draw_owner(&mut self) -> usize {
        let u = self.rng.unit();
        1 + self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }

    /// One API request of `owner`, with what it does to the table.
    fn request(&mut self, owner: usize, s: &mut Second) {
        self.report.requests += 1;
        let (owner_id, key_pk) = self.owner(owner);
        // Every request resolves its key: one consistent read (routes on one
        // upload read the key and the session in the same BatchGetItem,
        // which costs the same read units).
        s.read(Place::Table, key_pk, 1.0);
        let owner_pk = layout::owner_pk(&owner_id);
        let roll = self.rng.next() % 100;
        // The owner's most recent session, if any.
        let mine = self.open.get(&owner).and_then(|v| v.len().checked_sub(1));
        match (roll, mine) {
            // create: transaction: put session (+ by_owner and by_due
            // entries), reserve on the owner's usage item; a multipart
            // create (one in five here) reads the usage item first.
            (0..=29, _) | (_, None) => {
                let id = upload_id(&mut self.rng);
                self.report.uploads += 1;
                if self.report.uploads % 5 == 0 {
                    s.read(Place::Table, owner_pk.clone(), 1.0);
                }
                s.write(Place::Table, layout::session_pk(&id), 2.0);
                s.write(Place::Table, owner_pk.clone(), 2.0);
                s.write(Place::ByOwner, owner_pk.clone(), 1.0);
                s.write(Place::ByDue, layout::due_partition(DUE_PENDING, layout::due_shard(&id)), 1.0);
                *s.transactions.entry(owner_pk).or_default() += 1.0;
                let mine = self.open.entry(owner).or_default();
                mine.push(Open { id, completed: false });
                if mine.len() > REMEMBERED {
                    mine.remove(0);
                }
            }
            // confirm: session read, object checks in S3; the transaction
            // completes the session (its by_due entry goes, its by_owner
            // entry changes) and moves the reservation.
            (30..=54, Some(i)) if !self.open[&owner][i].completed => {
                let id = self.open[&owner][i].id.clone();
                s.read(Place::Table, layout::session_pk(&id), 1.0);
                s.write(Place::Table, layout::session_pk(&id), 2.0);
                s.write(Place::Table, owner_pk.clone(), 2.0);
                s.write(Place::ByOwner, owner_pk.clone(), 1.0);
                s.write(Place::ByDue, layout::due_partition(DUE_PENDING, layout::due_shard(&id)), 1.0);
                *s.transactions.entry(owner_pk).or_default() += 1.0;
                if let Some(o) = self.open.get_mut(&owner) {
                    o[i].completed = true;
                }
            }
            // list: one page of the owner's sessions from by_owner (up to
            // 50 items of ~1 KB: about 13 read units, eventually consistent
            // halves that; counted as 7).
            (55..=69, _) => {
                s.read(Place::ByOwner, owner_pk, 7.0);
            }
            // delete: session read; transaction: delete session (its index
            // entries go), release on usage, put the cleanup task (a by_due
            // entry, due at the final pass); then cleanup reads the task on
            // its first pass and, at the final pass, reads and deletes it.
            (70..=84, Some(i)) => {
                let gone = self.open.get_mut(&owner).map(|v| v.swap_remove(i)).expect("the owner's session");
                let id = gone.id;
                let session = layout::session_pk(&id);
                let task = layout::cleanup_pk(&id);
                let due_cleanup = layout::due_partition(DUE_CLEANUP, layout::due_shard(&id));
                s.read(Place::Table, session.clone(), 1.0);
                s.write(Place::Table, session, 2.0);
                s.write(Place::Table, owner_pk.clone(), 2.0);
                s.write(Place::Table, task.clone(), 2.0);
                s.write(Place::ByOwner, owner_pk.clone(), 1.0);
                if !gone.completed {
                    s.write(Place::ByDue, layout::due_partition(DUE_PENDING, layout::due_shard(&id)), 1.0);
                }
                s.write(Place::ByDue, due_cleanup.clone(), 1.0);
                *s.transactions.entry(owner_pk).or_default() += 1.0;
                // Cleanup's two passes, counted in the same second (the
                // steady state has as many final passes as deletions).
                s.read(Place::Table, task.clone(), 2.0);
                s.write(Place::Table, task, 1.0);
                s.write(Place::ByDue, due_cleanup, 1.0);
            }
            // get (and confirms of completed uploads): one session read.
            (_, Some(i)) => {
                let id = self.open[&owner][i].id.clone();
                s.read(Place::Table, layout::session_pk(&id), 1.0);
            }
        }
    }
}

/// Runs the model over `load`.
pub fn simulate(load: &Load) -> Report {
    // Zipf CDF over the owners (1-based ranks).
    let mut cdf = Vec::with_capacity(load.owners as usize);
    let mut total = 0.0;
    for rank in 1..=load.owners {
        total += 1.0 / (rank as f64).powf(load.zipf);
        cdf.push(total);
    }
    for c in &mut cdf {
        *c /= total;
    }
    let mut model = Model {
        rng: Rng(0x9e37_79b9_7f4a_7c15),
        cdf,
        owners: vec![None; load.owners as usize + 1],
        open: HashMap::new(),
        report: Report::default(),
    };
    let mut best_w: HashMap<Place, Busiest> = HashMap::new();
    let mut best_r: HashMap<Place, Busiest> = HashMap::new();
    for _ in 0..load.seconds {
        let mut second = Second::default();
        // Interleave the tenant's requests with everyone else's.
        let all = load.rate + load.tenant_rate;
        for n in 0..all {
            let owner = if n % (all / load.tenant_rate.max(1)).max(1) == 0 && load.tenant_rate > 0 {
                0
            } else {
                model.draw_owner()
            };
            model.request(owner, &mut second);
        }
        let due_total: f64 = second.writes.iter().filter(|((p, _), _)| *p == Place::ByDue).map(|(_, u)| u).sum();
        model.report.due_writes_unsharded = model.report.due_writes_unsharded.max(due_total);
        model.report.write_units += keep_busiest(second.writes, &mut best_w);
        model.report.read_units += keep_busiest(second.reads, &mut best_r);
        for (key, count) in second.transactions {
            if count > model.report.busiest_item.per_second {
                model.report.busiest_item = Busiest { key, per_second: count };
            }
        }
    }
    let mut report = model.report;
    report.writes = best_w.into_iter().collect();
    report.writes.sort_by_key(|(p, _)| *p);
    report.reads = best_r.into_iter().collect();
    report.reads.sort_by_key(|(p, _)| *p);
    report
}
