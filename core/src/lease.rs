//! Leader-lease decisions: `(me, db now, lease row, belief, config) -> Action`.
//!
//! A cluster keeps one live libp2p node, the holder of a lease row in the shared
//! database. This module is the whole policy and nothing else: the node's lease loop
//! reads the row together with the database's clock, asks [`decide`] what to do, does it
//! (one conditional statement per action, see `node/src/store`), and feeds the result
//! back in as its new [`Belief`].
//!
//! Rules:
//! - Time for expiry is the **database's** clock (`now()` read with the row), never the
//!   node's: two nodes with skewed clocks still agree on whether a lease expired.
//! - Every acquisition bumps the row's generation; every write a leader makes is
//!   conditional on (holder, generation, unexpired), so a stale leader's writes fail.
//! - Self-fencing: a leader whose last successful renewal is `ttl - margin` old steps down
//!   by itself, before the database can expire it and let another node in. When the
//!   database is unreachable there is no database time to decide with, so the loop also
//!   keeps a local monotonic deadline from [`accept_until`] and stops accepting deals when
//!   it passes, whatever the database says later.
//! - Graceful shutdown releases the row so a standby takes over at its next poll.

use std::{fmt, ops::Add, time::Duration};

/// Database time: milliseconds since the Unix epoch, as the database's clock says.
pub type DbMillis = i64;

/// The timing of the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long an acquisition or renewal keeps the lease alive in the database.
    pub ttl: Duration,
    /// How often the leader renews (TTL/3 by default: two renewals may fail in a row).
    pub renew_interval: Duration,
    /// How often a standby reads the row.
    pub poll_interval: Duration,
    /// How long before the database would expire it the leader steps down by itself. Covers
    /// the rate difference between the database's clock and the node's, and the time the
    /// node needs to stop accepting deals.
    pub safety_margin: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            ttl: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            poll_interval: Duration::from_secs(2),
            safety_margin: Duration::from_secs(3),
        }
    }
}

/// Why a [`LeaseConfig`] cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseConfigError {
    #[error("lease ttl must be positive")]
    ZeroTtl,
    #[error("lease safety margin ({margin:?}) must be shorter than the ttl ({ttl:?})")]
    MarginTooLarge { margin: Duration, ttl: Duration },
    #[error(
        "lease renew interval ({renew:?}) must be shorter than ttl - safety margin ({fence:?}), \
         or the leader fences itself before renewing"
    )]
    RenewTooSlow { renew: Duration, fence: Duration },
    #[error("lease renew and poll intervals must be positive")]
    ZeroInterval,
}

impl LeaseConfig {
    /// Check that the timings can work together.
    pub fn validate(&self) -> Result<(), LeaseConfigError> {
        if self.ttl.is_zero() {
            return Err(LeaseConfigError::ZeroTtl);
        }
        if self.safety_margin >= self.ttl {
            return Err(LeaseConfigError::MarginTooLarge {
                margin: self.safety_margin,
                ttl: self.ttl,
            });
        }
        if self.renew_interval.is_zero() || self.poll_interval.is_zero() {
            return Err(LeaseConfigError::ZeroInterval);
        }
        let fence = self.fence_after();
        if self.renew_interval >= fence {
            return Err(LeaseConfigError::RenewTooSlow {
                renew: self.renew_interval,
                fence,
            });
        }
        Ok(())
    }

    /// How long after its last successful renewal a leader may keep acting: `ttl - margin`.
    pub fn fence_after(&self) -> Duration {
        self.ttl.saturating_sub(self.safety_margin)
    }
}

/// The lease row as last read. `None` row = no row at all (empty table).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseRow {
    /// The node that holds (or last held, if expired) the lease; `None` once released.
    pub holder: Option<String>,
    /// Bumped by every acquisition; 0 before the first.
    pub generation: u64,
    /// When the holder's lease ends, in database time; `None` once released.
    pub expires_at: Option<DbMillis>,
}

impl LeaseRow {
    /// Whether someone holds the lease at database time `now`.
    pub fn is_live(&self, now: DbMillis) -> bool {
        self.holder.is_some() && self.expires_at.is_some_and(|e| e > now)
    }
}

/// What this node believes about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Belief {
    Standby,
    Leader {
        generation: u64,
        /// Database time of the last successful acquisition or renewal.
        renewed_at: DbMillis,
    },
}

/// Why a leader steps down.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StepDownReason {
    /// The row is gone (someone emptied the table).
    RowMissing,
    /// The row names another holder or another generation: someone else acquired.
    Superseded {
        holder: Option<String>,
        generation: u64,
    },
    /// The row is still ours but the database says it has expired.
    Expired,
    /// Our last successful renewal is `ttl - margin` old (or older): we stop before the
    /// database can expire us.
    RenewalTooOld { age: Duration },
}

impl fmt::Display for StepDownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepDownReason::RowMissing => f.write_str("the lease row is gone"),
            StepDownReason::Superseded { holder, generation } => write!(
                f,
                "the lease is now held by {} at generation {generation}",
                holder.as_deref().unwrap_or("nobody")
            ),
            StepDownReason::Expired => f.write_str("the lease expired in the database"),
            StepDownReason::RenewalTooOld { age } => {
                write!(f, "the last successful renewal is {age:?} old")
            }
        }
    }
}

/// What the node should do now.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Take the lease: insert the row if the table is empty (`expect_generation: None`),
    /// else take the row at that generation, bumping it. The store does this in one
    /// conditional statement; losing a race just means standing by.
    Acquire { expect_generation: Option<u64> },
    /// Extend our lease (conditional on holder, generation and not yet expired).
    Renew { generation: u64 },
    /// Nothing to do now; decide again after this long. A standby keeps standing by, a
    /// leader keeps leading.
    StandBy { next_check_after: Duration },
    /// Stop accepting deals and close the host now.
    StepDown { reason: StepDownReason },
    /// Graceful shutdown: stop accepting, then give the row up (conditional on holder and
    /// generation) so a standby takes over at its next poll.
    Release { generation: u64 },
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// This node's id (unique per process: a restarted node may reuse it, see below).
    pub me: &'a str,
    /// The database's time, read in the same statement as `row`.
    pub now: DbMillis,
    /// The lease row as read; `None` = empty table.
    pub row: Option<&'a LeaseRow>,
    pub belief: Belief,
    pub config: &'a LeaseConfig,
    pub shutting_down: bool,
}

/// `to - from` as a duration, 0 if negative.
fn elapsed(from: DbMillis, to: DbMillis) -> Duration {
    Duration::from_millis(to.saturating_sub(from).max(0) as u64)
}

/// The lease decision.
///
/// A standby that finds its own id as holder (its previous incarnation, or an acquisition
/// whose answer it never got) takes the row again with a fresh generation rather than
/// waiting for it to expire: the bump fences out whatever wrote under the old one.
pub fn decide(i: Inputs<'_>) -> Action {
    let cfg = i.config;
    match i.belief {
        Belief::Leader {
            generation,
            renewed_at,
        } => {
            let reason = match i.row {
                None => Some(StepDownReason::RowMissing),
                Some(r) if r.holder.as_deref() != Some(i.me) || r.generation != generation => {
                    Some(StepDownReason::Superseded {
                        holder: r.holder.clone(),
                        generation: r.generation,
                    })
                }
                Some(r) if !r.is_live(i.now) => Some(StepDownReason::Expired),
                Some(_) => None,
            };
            if let Some(reason) = reason {
                return Action::StepDown { reason };
            }
            if i.shutting_down {
                return Action::Release { generation };
            }
            let age = elapsed(renewed_at, i.now);
            let fence = cfg.fence_after();
            if age >= fence {
                return Action::StepDown {
                    reason: StepDownReason::RenewalTooOld { age },
                };
            }
            if age >= cfg.renew_interval {
                return Action::Renew { generation };
            }
            Action::StandBy {
                next_check_after: cfg.renew_interval - age,
            }
        }
        Belief::Standby => {
            let poll = Action::StandBy {
                next_check_after: cfg.poll_interval,
            };
            let Some(r) = i.row else {
                return if i.shutting_down {
                    poll
                } else {
                    Action::Acquire {
                        expect_generation: None,
                    }
                };
            };
            let mine = r.holder.as_deref() == Some(i.me);
            if i.shutting_down {
                // A row under our name that we do not believe in: give it up too.
                return if mine && r.is_live(i.now) {
                    Action::Release {
                        generation: r.generation,
                    }
                } else {
                    poll
                };
            }
            if mine || !r.is_live(i.now) {
                Action::Acquire {
                    expect_generation: Some(r.generation),
                }
            } else {
                poll
            }
        }
    }
}

/// Until when a leader may keep accepting deals after a renewal (or acquisition) that it
/// *sent* at local monotonic time `sent_at`: `sent_at + ttl - margin`.
///
/// Take `sent_at` before sending the statement: the database computes the expiry from its
/// own `now()`, which is no earlier than the moment the request left, so this deadline
/// falls at least `margin` (less any clock-rate difference) before the database expiry.
/// Works with `std::time::Instant` and with a test's fake clock.
pub fn accept_until<T: Add<Duration, Output = T>>(sent_at: T, config: &LeaseConfig) -> T {
    sent_at + config.fence_after()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "node-a";
    const OTHER: &str = "node-b";
    const T0: DbMillis = 1_700_000_000_000;

    fn cfg() -> LeaseConfig {
        LeaseConfig::default()
    }

    fn row(holder: Option<&str>, generation: u64, expires_at: Option<DbMillis>) -> LeaseRow {
        LeaseRow {
            holder: holder.map(str::to_owned),
            generation,
            expires_at,
        }
    }

    fn run(now: DbMillis, r: Option<&LeaseRow>, belief: Belief, shutting_down: bool) -> Action {
        decide(Inputs {
            me: ME,
            now,
            row: r,
            belief,
            config: &cfg(),
            shutting_down,
        })
    }

    fn leader(generation: u64, renewed_at: DbMillis) -> Belief {
        Belief::Leader {
            generation,
            renewed_at,
        }
    }

    const S: i64 = 1000;

    #[test]
    fn defaults_are_valid_and_match_the_design() {
        let c = cfg();
        c.validate().unwrap();
        assert_eq!(c.ttl, Duration::from_secs(15));
        assert_eq!(c.renew_interval, c.ttl / 3);
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        assert_eq!(c.fence_after(), Duration::from_secs(12));
    }

    #[test]
    fn validate_rejects_unworkable_timings() {
        let mut c = cfg();
        c.ttl = Duration::ZERO;
        assert_eq!(c.validate(), Err(LeaseConfigError::ZeroTtl));
        let mut c = cfg();
        c.safety_margin = c.ttl;
        assert!(matches!(
            c.validate(),
            Err(LeaseConfigError::MarginTooLarge { .. })
        ));
        let mut c = cfg();
        c.renew_interval = Duration::from_secs(12);
        assert!(matches!(
            c.validate(),
            Err(LeaseConfigError::RenewTooSlow { .. })
        ));
        let mut c = cfg();
        c.poll_interval = Duration::ZERO;
        assert_eq!(c.validate(), Err(LeaseConfigError::ZeroInterval));
    }

    #[test]
    fn standby_on_empty_table_inserts() {
        assert_eq!(
            run(T0, None, Belief::Standby, false),
            Action::Acquire {
                expect_generation: None
            }
        );
    }

    #[test]
    fn standby_takes_released_row() {
        let r = row(None, 4, None);
        assert_eq!(
            run(T0, Some(&r), Belief::Standby, false),
            Action::Acquire {
                expect_generation: Some(4)
            }
        );
    }

    #[test]
    fn standby_waits_while_another_holds_a_live_lease() {
        let r = row(Some(OTHER), 4, Some(T0 + 1));
        assert_eq!(
            run(T0, Some(&r), Belief::Standby, false),
            Action::StandBy {
                next_check_after: Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn standby_takes_expired_row_at_and_after_expiry() {
        let r = row(Some(OTHER), 4, Some(T0));
        for now in [T0, T0 + 1, T0 + 3600 * S] {
            assert_eq!(
                run(now, Some(&r), Belief::Standby, false),
                Action::Acquire {
                    expect_generation: Some(4)
                }
            );
        }
        // A holder without an expiry is not live either.
        let r = row(Some(OTHER), 4, None);
        assert_eq!(
            run(T0, Some(&r), Belief::Standby, false),
            Action::Acquire {
                expect_generation: Some(4)
            }
        );
    }

    #[test]
    fn standby_retakes_a_row_under_its_own_name() {
        let r = row(Some(ME), 9, Some(T0 + 10 * S));
        assert_eq!(
            run(T0, Some(&r), Belief::Standby, false),
            Action::Acquire {
                expect_generation: Some(9)
            }
        );
    }

    #[test]
    fn standby_shutting_down_does_nothing_or_releases_its_own_row() {
        let poll = Action::StandBy {
            next_check_after: Duration::from_secs(2),
        };
        assert_eq!(run(T0, None, Belief::Standby, true), poll);
        let expired = row(Some(OTHER), 1, Some(T0 - 1));
        assert_eq!(run(T0, Some(&expired), Belief::Standby, true), poll);
        let other = row(Some(OTHER), 1, Some(T0 + S));
        assert_eq!(run(T0, Some(&other), Belief::Standby, true), poll);
        let mine = row(Some(ME), 3, Some(T0 + S));
        assert_eq!(
            run(T0, Some(&mine), Belief::Standby, true),
            Action::Release { generation: 3 }
        );
        let mine_expired = row(Some(ME), 3, Some(T0));
        assert_eq!(run(T0, Some(&mine_expired), Belief::Standby, true), poll);
    }

    #[test]
    fn leader_waits_until_renewal_is_due() {
        let r = row(Some(ME), 2, Some(T0 + 15 * S));
        assert_eq!(
            run(T0, Some(&r), leader(2, T0), false),
            Action::StandBy {
                next_check_after: Duration::from_secs(5)
            }
        );
        assert_eq!(
            run(T0 + 4 * S, Some(&r), leader(2, T0), false),
            Action::StandBy {
                next_check_after: Duration::from_secs(1)
            }
        );
        // A database clock that stepped back reads as age 0.
        assert_eq!(
            run(T0 - S, Some(&r), leader(2, T0), false),
            Action::StandBy {
                next_check_after: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn leader_renews_when_due_and_until_the_fence() {
        let r = row(Some(ME), 2, Some(T0 + 15 * S));
        for now in [T0 + 5 * S, T0 + 8 * S, T0 + 12 * S - 1] {
            assert_eq!(
                run(now, Some(&r), leader(2, T0), false),
                Action::Renew { generation: 2 },
                "at +{}ms",
                now - T0
            );
        }
    }

    #[test]
    fn leader_fences_itself_before_the_database_expires_it() {
        let r = row(Some(ME), 2, Some(T0 + 15 * S));
        assert_eq!(
            run(T0 + 12 * S, Some(&r), leader(2, T0), false),
            Action::StepDown {
                reason: StepDownReason::RenewalTooOld {
                    age: Duration::from_secs(12)
                }
            }
        );
    }

    #[test]
    fn leader_steps_down_when_the_row_says_so() {
        let b = leader(2, T0);
        let cases = [
            (None, StepDownReason::RowMissing),
            (
                Some(row(Some(OTHER), 3, Some(T0 + 15 * S))),
                StepDownReason::Superseded {
                    holder: Some(OTHER.into()),
                    generation: 3,
                },
            ),
            // Our name, a newer generation: another incarnation of us took it.
            (
                Some(row(Some(ME), 3, Some(T0 + 15 * S))),
                StepDownReason::Superseded {
                    holder: Some(ME.into()),
                    generation: 3,
                },
            ),
            (
                Some(row(None, 2, None)),
                StepDownReason::Superseded {
                    holder: None,
                    generation: 2,
                },
            ),
            (Some(row(Some(ME), 2, Some(T0))), StepDownReason::Expired),
        ];
        for (r, reason) in cases {
            for shutting_down in [false, true] {
                assert_eq!(
                    run(T0 + S, r.as_ref(), b, shutting_down),
                    Action::StepDown {
                        reason: reason.clone()
                    },
                    "{r:?}"
                );
            }
        }
        assert!(StepDownReason::Expired.to_string().contains("expired"));
    }

    #[test]
    fn leader_releases_on_shutdown() {
        let r = row(Some(ME), 2, Some(T0 + 15 * S));
        assert_eq!(
            run(T0 + S, Some(&r), leader(2, T0), true),
            Action::Release { generation: 2 }
        );
    }

    #[test]
    fn accept_until_is_ttl_minus_margin_after_sending() {
        // A fake monotonic clock: milliseconds as a Duration since the node started.
        let sent = Duration::from_millis(40_000);
        assert_eq!(accept_until(sent, &cfg()), Duration::from_millis(52_000));
    }

    mod model {
        //! Two nodes, one simulated row, messages delayed and reordered: never two
        //! leaders at the same database time.
        use super::*;
        use proptest::prelude::*;

        /// The database: one row, one clock (ms). Conditional statements as in the store.
        #[derive(Debug, Default)]
        struct Db {
            row: Option<LeaseRow>,
        }

        #[derive(Debug, Clone, Copy)]
        struct Grant {
            generation: u64,
            at: DbMillis,
        }

        impl Db {
            fn acquire(
                &mut self,
                me: &str,
                expect: Option<u64>,
                now: DbMillis,
                ttl: i64,
            ) -> Option<Grant> {
                match (&mut self.row, expect) {
                    (None, None) => {
                        self.row = Some(LeaseRow {
                            holder: Some(me.into()),
                            generation: 1,
                            expires_at: Some(now + ttl),
                        });
                        Some(Grant {
                            generation: 1,
                            at: now,
                        })
                    }
                    (Some(r), Some(g))
                        if r.generation == g
                            && (r.holder.as_deref() == Some(me) || !r.is_live(now)) =>
                    {
                        r.generation += 1;
                        r.holder = Some(me.into());
                        r.expires_at = Some(now + ttl);
                        Some(Grant {
                            generation: r.generation,
                            at: now,
                        })
                    }
                    _ => None,
                }
            }
            fn renew(&mut self, me: &str, g: u64, now: DbMillis, ttl: i64) -> Option<Grant> {
                let r = self.row.as_mut()?;
                if r.holder.as_deref() == Some(me) && r.generation == g && r.is_live(now) {
                    r.expires_at = Some(now + ttl);
                    Some(Grant {
                        generation: g,
                        at: now,
                    })
                } else {
                    None
                }
            }
            fn release(&mut self, me: &str, g: u64) {
                if let Some(r) = self.row.as_mut() {
                    if r.holder.as_deref() == Some(me) && r.generation == g {
                        r.holder = None;
                        r.expires_at = None;
                    }
                }
            }
            /// A fenced write (a deal insert): succeeds only for the live holder.
            fn fenced_write(&self, me: &str, g: u64, now: DbMillis) -> bool {
                self.row.as_ref().is_some_and(|r| {
                    r.holder.as_deref() == Some(me) && r.generation == g && r.is_live(now)
                })
            }
        }

        /// A node's monotonic clock, in ms: the fake clock [`accept_until`] runs on.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        struct Local(i64);
        impl Add<Duration> for Local {
            type Output = Local;
            fn add(self, d: Duration) -> Local {
                Local(self.0 + d.as_millis() as i64)
            }
        }

        /// What reaches a node when its answer arrives.
        #[derive(Debug, Clone, Copy)]
        enum Outcome {
            /// The answer to an acquisition or renewal.
            Granted(Option<Grant>),
            /// The read that told it to step down.
            Down,
        }

        /// A node's view. It accepts deals while it believes it leads AND its local
        /// deadline (`accept_until`, on its own monotonic clock) has not passed.
        #[derive(Debug)]
        struct Node {
            id: &'static str,
            belief: Belief,
            /// Local clock = database clock + `skew` (a constant offset: rates are equal,
            /// the margin is there for rate differences).
            skew: i64,
            accept_until: Option<Local>,
            /// An answer in flight: (arrives at db time, outcome, sent at local time).
            pending: Option<(DbMillis, Outcome, Local)>,
            shutting_down: bool,
        }

        impl Node {
            fn new(id: &'static str, skew: i64) -> Node {
                Node {
                    id,
                    belief: Belief::Standby,
                    skew,
                    accept_until: None,
                    pending: None,
                    shutting_down: false,
                }
            }
            fn accepting(&self, db_now: DbMillis) -> bool {
                matches!(self.belief, Belief::Leader { .. })
                    && self
                        .accept_until
                        .is_some_and(|t| Local(db_now + self.skew) < t)
            }
            fn stand_by(&mut self) {
                self.belief = Belief::Standby;
                self.accept_until = None;
            }
        }

        #[derive(Debug, Clone)]
        enum Step {
            /// Advance the database clock.
            Tick(u16),
            /// Node n reads the row and acts in one statement that reaches the database
            /// `d` ms after it was sent; the answer comes back `r` ms later.
            Act { n: usize, d: u16, r: u16 },
            /// Node n begins shutting down.
            Shutdown(usize),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                1 => (1u16..4000).prop_map(Step::Tick),
                4 => (0usize..2, 0u16..2500, 0u16..2500).prop_map(|(n, d, r)| Step::Act { n, d, r }),
                1 => (0usize..2).prop_map(Step::Shutdown),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            #[test]
            fn never_two_leaders_accepting_at_once(
                steps in proptest::collection::vec(step(), 1..300),
                skew_a in -100_000i64..100_000,
                skew_b in -100_000i64..100_000,
            ) {
                let config = LeaseConfig::default();
                let ttl = config.ttl.as_millis() as i64;
                let mut db = Db::default();
                let mut now: DbMillis = T0;
                let mut nodes = [Node::new("a", skew_a), Node::new("b", skew_b)];
                let mut writes: Vec<(DbMillis, &str, u64)> = Vec::new();
                for s in steps {
                    match s {
                        Step::Tick(ms) => now += ms as i64,
                        Step::Shutdown(n) => nodes[n].shutting_down = true,
                        Step::Act { n, d, r } => {
                            let node = &mut nodes[n];
                            if let Some((arrive, outcome, sent)) = node.pending {
                                if arrive > now {
                                    continue; // still waiting for the answer
                                }
                                node.pending = None;
                                match outcome {
                                    Outcome::Granted(Some(g)) if !node.shutting_down => {
                                        node.belief = Belief::Leader { generation: g.generation, renewed_at: g.at };
                                        node.accept_until = Some(accept_until(sent, &config));
                                    }
                                    Outcome::Granted(Some(_)) => {}
                                    Outcome::Granted(None) | Outcome::Down => node.stand_by(),
                                }
                            }
                            let sent = Local(now + node.skew);
                            let at_db = now + d as i64;
                            let arrive = at_db + r as i64;
                            let action = decide(Inputs {
                                me: node.id,
                                now: at_db,
                                row: db.row.as_ref(),
                                belief: node.belief,
                                config: &config,
                                shutting_down: node.shutting_down,
                            });
                            match action {
                                Action::Acquire { expect_generation } => {
                                    let g = db.acquire(node.id, expect_generation, at_db, ttl);
                                    node.pending = Some((arrive, Outcome::Granted(g), sent));
                                }
                                Action::Renew { generation } => {
                                    let g = db.renew(node.id, generation, at_db, ttl);
                                    node.pending = Some((arrive, Outcome::Granted(g), sent));
                                }
                                // Learnt when the answer to the read arrives.
                                Action::StepDown { .. } => {
                                    node.pending = Some((arrive, Outcome::Down, sent));
                                }
                                // Stop accepting first, then give the row up.
                                Action::Release { generation } => {
                                    node.stand_by();
                                    db.release(node.id, generation);
                                }
                                Action::StandBy { .. } => {}
                            }
                            // A node that accepts a deal now writes it, fenced.
                            if node.accepting(now) {
                                if let Belief::Leader { generation, .. } = node.belief {
                                    if db.fenced_write(node.id, generation, now) {
                                        writes.push((now, node.id, generation));
                                    }
                                }
                            }
                        }
                    }
                    // At every database instant reached: at most one node accepts deals, and
                    // the one that does holds a live lease in the database.
                    let accepting: Vec<_> = nodes.iter().filter(|x| x.accepting(now)).collect();
                    prop_assert!(accepting.len() <= 1, "two leaders accept at {}: {:?}", now, nodes);
                    if let Some(x) = accepting.first() {
                        let Belief::Leader { generation, .. } = x.belief else { unreachable!() };
                        prop_assert!(db.fenced_write(x.id, generation, now),
                            "{} accepts at {} but its lease is not live: {:?}", x.id, now, db.row);
                    }
                }
                // Fenced writes come from non-decreasing generations.
                prop_assert!(writes.windows(2).all(|w| w[0].2 <= w[1].2));
            }
        }
    }
}
