//! The session state machine (`shared::domain::Session`) under arbitrary
//! sequences of creates, completing marks, completions, deletions, expiries
//! and the clock moving on.
//!
//! The owner's usage item is modelled with exactly the arithmetic of the
//! store's conditional writes (`shared/src/store/sessions.rs`): a create
//! adds what the new session holds, on condition that the quota and the
//! pending cap hold; a completion adds its size to `bytes_used` and takes it
//! and one pending session off the reservations; a deletion (client or
//! sweeper) takes off what the session holds. After every step the usage
//! must equal the sum of what the live sessions hold, the quota must hold,
//! and every session must be in a legal state, shown to clients as the
//! contract says.

use proptest::prelude::*;
use proptest::sample::Index;
use shared::domain::{Holding, ObjectKey, OwnerId, Session, Status, Timestamp, UploadId};
use shared::views;
use shared::Error;

const QUOTA: u64 = 10_000;
const MAX_PENDING: u64 = 5;

#[derive(Debug, Clone)]
enum Op {
    Create {
        size: u64,
        expires_in: i64,
    },
    MarkCompleting(Index),
    Complete(Index),
    Delete(Index),
    /// The sweeper's pass over one session.
    Expire(Index),
    Wait(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..=4_000, 60i64..=7_200).prop_map(|(size, expires_in)| Op::Create { size, expires_in }),
        2 => any::<Index>().prop_map(Op::MarkCompleting),
        3 => any::<Index>().prop_map(Op::Complete),
        2 => any::<Index>().prop_map(Op::Delete),
        2 => any::<Index>().prop_map(Op::Expire),
        2 => (1i64..=5_400).prop_map(Op::Wait),
    ]
}

#[derive(Debug, Default)]
struct World {
    now: i64,
    live: Vec<Session>,
    usage: Holding,
    /// Ids that reached `completed`, which must never be seen pending again.
    completed: Vec<UploadId>,
}

impl World {
    fn at(&self) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + self.now * 1000)
    }

    fn pick(&self, i: &Index) -> Option<usize> {
        (!self.live.is_empty()).then(|| i.index(self.live.len()))
    }

    /// The store's creation transaction: refused unless the quota and the
    /// pending cap hold afterwards.
    fn create(&mut self, size: u64, expires_in: i64) -> bool {
        let owner = OwnerId::parse("owner").unwrap();
        let id = UploadId::generate();
        let now = self.at();
        let session = Session {
            object_key: ObjectKey::for_upload(&owner, &id),
            id,
            owner,
            status: Status::Pending,
            filename: "f".into(),
            content_type: "a/b".into(),
            size,
            multipart: None,
            checksums: None,
            created_at: now,
            expires_at: now.plus_seconds(expires_in),
            completed_at: None,
            completing_since: None,
            token_id: None,
            version: 0,
        };
        let adds = session.holding();
        if self.usage.held() + adds.held() > QUOTA || self.usage.pending >= MAX_PENDING {
            return false;
        }
        self.usage.reserved += adds.reserved;
        self.usage.pending += adds.pending;
        self.live.push(session);
        true
    }

    /// The store's deletion transaction: removes the record and releases
    /// what it holds, from `bytes_used` or from the reservations.
    fn remove(&mut self, i: usize) {
        let gone = self.live.remove(i);
        match gone.status {
            Status::Completed => self.usage.used -= gone.size,
            Status::Pending => {
                self.usage.reserved -= gone.size;
                self.usage.pending -= 1;
            }
        }
    }

    fn check(&self, step: &str) -> Result<(), TestCaseError> {
        let now = self.at();
        let mut sum = Holding::default();
        for s in &self.live {
            let h = s.holding();
            sum.used += h.used;
            sum.reserved += h.reserved;
            sum.pending += h.pending;
            let view = serde_json::to_value(views::session(s)).unwrap();
            prop_assert_eq!(view["status"].as_str(), Some(s.status.as_str()));
            prop_assert_eq!(view["size"].as_u64(), Some(s.size));
            match s.status {
                Status::Completed => {
                    prop_assert!(s.completed_at.is_some() && s.completing_since.is_none(), "{}: {:?}", step, s);
                    prop_assert!(!s.expirable(now), "{}: a completed session is expirable", step);
                    prop_assert!(matches!(s.accepts_bytes(now), Err(Error::AlreadyCompleted)));
                    prop_assert!(s.complete(now).is_none() && s.mark_completing(now).is_none());
                    prop_assert!(view["expires_at"].is_null() && view["completed_at"].is_string(), "{}", view);
                }
                Status::Pending => {
                    prop_assert!(!self.completed.contains(&s.id), "{}: completed went back to pending", step);
                    prop_assert!(s.completed_at.is_none(), "{}: {:?}", step, s);
                    match s.accepts_bytes(now) {
                        Ok(()) => prop_assert!(now < s.expires_at),
                        Err(Error::Expired) => prop_assert!(s.expires_at <= now),
                        Err(e) => prop_assert!(false, "{}: {}", step, e),
                    }
                    if s.expirable(now) {
                        prop_assert!(s.expires_at <= now, "{}: expirable before it expired", step);
                    }
                    if s.completing_since.is_none() {
                        prop_assert_eq!(s.expirable(now), s.expires_at <= now, "{}", step);
                    }
                    prop_assert!(view["expires_at"].is_string() && view["completed_at"].is_null(), "{}", view);
                }
            }
        }
        prop_assert_eq!(sum, self.usage, "{}: usage differs from what the sessions hold", step);
        prop_assert!(self.usage.held() <= QUOTA, "{}: quota exceeded", step);
        prop_assert!(self.usage.pending <= MAX_PENDING, "{}: too many pending", step);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn any_sequence_of_transitions_keeps_the_invariants(ops in prop::collection::vec(op(), 1..60)) {
        let mut w = World::default();
        for (n, op) in ops.iter().enumerate() {
            let step = format!("step {n} {op:?}");
            let now = w.at();
            match op {
                Op::Create { size, expires_in } => {
                    let (held, pending) = (w.usage.held(), w.usage.pending);
                    let created = w.create(*size, *expires_in);
                    prop_assert_eq!(created, held + size <= QUOTA && pending < MAX_PENDING, "{}", step);
                }
                Op::MarkCompleting(i) => if let Some(i) = w.pick(i) {
                    let before = w.live[i].clone();
                    match before.mark_completing(now) {
                        Some(after) => {
                            prop_assert_eq!(before.status, Status::Pending);
                            prop_assert_eq!(after.version, before.version + 1);
                            prop_assert_eq!(after.completing_since, Some(now));
                            prop_assert_eq!(after.holding(), before.holding(), "marking moves no bytes");
                            prop_assert!(!after.expirable(now), "{}: expirable while completing", step);
                            w.live[i] = after;
                        }
                        None => prop_assert_eq!(before.status, Status::Completed),
                    }
                },
                Op::Complete(i) => if let Some(i) = w.pick(i) {
                    let before = w.live[i].clone();
                    match before.complete(now) {
                        Some(after) => {
                            prop_assert_eq!(before.status, Status::Pending);
                            prop_assert_eq!(after.status, Status::Completed);
                            prop_assert_eq!(after.version, before.version + 1);
                            prop_assert_eq!(after.completed_at, Some(now));
                            // The reservation becomes usage: what counts
                            // against the quota does not change.
                            prop_assert_eq!(after.holding().held(), before.holding().held());
                            // The store's completion: ADD bytes_used :size,
                            // bytes_reserved -:size, pending_count -1.
                            w.usage.used += before.size;
                            w.usage.reserved -= before.size;
                            w.usage.pending -= 1;
                            w.completed.push(after.id.clone());
                            w.live[i] = after;
                        }
                        None => prop_assert_eq!(before.status, Status::Completed),
                    }
                },
                Op::Delete(i) => if let Some(i) = w.pick(i) {
                    w.remove(i);
                },
                Op::Expire(i) => if let Some(i) = w.pick(i) {
                    if w.live[i].expirable(now) {
                        prop_assert_eq!(w.live[i].status, Status::Pending);
                        w.remove(i);
                    }
                },
                Op::Wait(secs) => w.now += secs,
            }
            w.check(&step)?;
        }
    }

    /// A completion abandoned for an hour no longer shields an expired
    /// session from the sweeper; before that, it does.
    #[test]
    fn abandoned_completions_expire(expires_in in 60i64..=7_200, marked_after in 0i64..=7_200, later in 0i64..=10_000) {
        let owner = OwnerId::parse("owner").unwrap();
        let id = UploadId::generate();
        let t0 = Timestamp::from_unix_millis(1_800_000_000_000);
        let pending = Session {
            object_key: ObjectKey::for_upload(&owner, &id),
            id, owner, status: Status::Pending, filename: "f".into(), content_type: "a/b".into(), size: 1,
            multipart: None, checksums: None, created_at: t0, expires_at: t0.plus_seconds(expires_in), completed_at: None,
            completing_since: None, token_id: None, version: 0,
        };
        let since = t0.plus_seconds(marked_after);
        let marked = pending.mark_completing(since).unwrap();
        let now = since.plus_seconds(later);
        let abandoned = later >= shared::domain::COMPLETION_ABANDONED_AFTER_SECONDS;
        prop_assert_eq!(marked.expirable(now), abandoned && marked.expires_at <= now);
    }
}
