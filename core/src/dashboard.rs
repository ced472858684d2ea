//! The operator's dashboard (`/ui/`) as decisions over values: which deals a list view
//! asks the store for (filter, order, cursor), how the query string reads, how a search
//! text is looked up, the chart's hours, and the session cookie (signed, expiring, with
//! the time passed in). The node renders and serves; nothing here touches a clock.

use crate::{
    deal::{Checkpoint, DealRecord},
    wire::{Cid, DealUuid},
};

/// Every checkpoint, in order (the position is a deal's state code below 8).
pub const CHECKPOINTS: [Checkpoint; 7] = [
    Checkpoint::Accepted,
    Checkpoint::Transferred,
    Checkpoint::Published,
    Checkpoint::PublishConfirmed,
    Checkpoint::AddedPiece,
    Checkpoint::IndexedAndAnnounced,
    Checkpoint::Complete,
];

/// Added to the checkpoint's position for a failed deal.
const FAILED_BIT: u8 = 8;

/// A deal's state as one byte: its checkpoint's position, plus 8 when failed. The store
/// indexes deals by it, so a filter is a set of codes.
pub fn state_code(checkpoint: Checkpoint, failed: bool) -> u8 {
    let at = CHECKPOINTS
        .iter()
        .position(|c| *c == checkpoint)
        .unwrap_or(0) as u8;
    at + if failed { FAILED_BIT } else { 0 }
}

/// The checkpoint and failed flag of a code from [`state_code`].
pub fn from_state_code(code: u8) -> Option<(Checkpoint, bool)> {
    let failed = code & FAILED_BIT != 0;
    let at = CHECKPOINTS.get(usize::from(code & !FAILED_BIT))?;
    (code < 2 * FAILED_BIT).then_some((*at, failed))
}

/// Every valid state code.
pub fn all_state_codes() -> impl Iterator<Item = u8> {
    (0..7u8).chain(FAILED_BIT..FAILED_BIT + 7)
}

/// The code of a stored deal.
pub fn deal_state_code(d: &DealRecord) -> u8 {
    state_code(d.checkpoint, d.is_failed())
}

/// Which deals a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateFilter {
    #[default]
    Any,
    /// Not failed, not `Complete`.
    InProgress,
    /// `Complete` and not failed.
    Done,
    Failed,
    /// At this checkpoint and not failed.
    At(Checkpoint),
}

impl StateFilter {
    /// The state codes it admits; `None`: all of them (no state index needed).
    pub fn codes(self) -> Option<Vec<u8>> {
        let codes = match self {
            StateFilter::Any => return None,
            StateFilter::InProgress => (0..6).collect(),
            StateFilter::Done => vec![state_code(Checkpoint::Complete, false)],
            StateFilter::Failed => (FAILED_BIT..FAILED_BIT + 7).collect(),
            StateFilter::At(c) => vec![state_code(c, false)],
        };
        Some(codes)
    }

    /// Its query-string value (empty for `Any`).
    pub fn as_param(self) -> &'static str {
        match self {
            StateFilter::Any => "",
            StateFilter::InProgress => "in-progress",
            StateFilter::Done => "done",
            StateFilter::Failed => "failed",
            StateFilter::At(c) => c.name(),
        }
    }

    pub fn parse(s: &str) -> Result<StateFilter, String> {
        Ok(match s {
            "" | "any" => StateFilter::Any,
            "in-progress" => StateFilter::InProgress,
            "done" => StateFilter::Done,
            "failed" => StateFilter::Failed,
            name => StateFilter::At(
                CHECKPOINTS
                    .into_iter()
                    .find(|c| c.name() == name)
                    .ok_or_else(|| format!("unknown state {name:?}"))?,
            ),
        })
    }
}

/// The order of a list: by acceptance time, ties by UUID bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Newest,
    Oldest,
}

impl Order {
    pub fn as_param(self) -> &'static str {
        match self {
            Order::Newest => "newest",
            Order::Oldest => "oldest",
        }
    }
}

/// Where a page ends: the last deal's acceptance time and UUID. The next page starts
/// strictly after it in the list's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at_unix_nanos: i64,
    pub uuid: DealUuid,
}

impl Cursor {
    pub fn of(d: &DealRecord) -> Cursor {
        Cursor {
            created_at_unix_nanos: d.created_at_unix_nanos,
            uuid: d.uuid,
        }
    }

    /// `<nanos>_<uuid>`: safe in a URL as is.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.created_at_unix_nanos, self.uuid)
    }

    pub fn parse(s: &str) -> Result<Cursor, String> {
        let bad = || format!("{s:?} is not a page cursor");
        let (t, u) = s.split_once('_').ok_or_else(bad)?;
        Ok(Cursor {
            created_at_unix_nanos: t.parse().map_err(|_| bad())?,
            uuid: DealUuid::parse(u).map_err(|_| bad())?,
        })
    }

    /// Does `(t, uuid)` come after the cursor in `order`?
    pub fn precedes(&self, order: Order, t: i64, uuid: &DealUuid) -> bool {
        let key = (t, uuid.0);
        let mine = (self.created_at_unix_nanos, self.uuid.0);
        match order {
            Order::Newest => key < mine,
            Order::Oldest => key > mine,
        }
    }
}

/// The filtered, ordered page a list view asks the store for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DealQuery {
    pub state: StateFilter,
    /// The proposal's client address (`f1…`/`t1…`), exactly.
    pub client: Option<String>,
    pub order: Order,
    pub after: Option<Cursor>,
    pub limit: usize,
}

/// Deals per page when the query string says nothing; the most it may ask.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;

impl Default for DealQuery {
    fn default() -> Self {
        DealQuery {
            state: StateFilter::Any,
            client: None,
            order: Order::Newest,
            after: None,
            limit: DEFAULT_PAGE,
        }
    }
}

/// What the deals page was asked: a search, or a filtered list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListRequest {
    List(DealQuery),
    Search(SearchKey),
}

/// A search text as the store looks it up: by UUID, or a CID that may be a proposal CID
/// (either kind) or a piece CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    Uuid(DealUuid),
    Cid(Cid),
}

impl SearchKey {
    pub fn parse(s: &str) -> Result<SearchKey, String> {
        let s = s.trim();
        if let Ok(u) = DealUuid::parse(s) {
            return Ok(SearchKey::Uuid(u));
        }
        Cid::parse(s)
            .map(SearchKey::Cid)
            .map_err(|_| format!("{s:?} is neither a deal UUID nor a CID"))
    }
}

/// Read the deals page's query string (`state`, `client`, `order`, `after`, `limit`,
/// `q`); unknown keys are ignored, bad values are a sentence.
pub fn parse_list_request(query: &str) -> Result<ListRequest, String> {
    let mut q = DealQuery::default();
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "q" if !v.trim().is_empty() => {
                return SearchKey::parse(&v).map(ListRequest::Search);
            }
            "state" => q.state = StateFilter::parse(&v)?,
            "client" if !v.trim().is_empty() => q.client = Some(v.trim().to_owned()),
            "order" => {
                q.order = match v.as_str() {
                    "" | "newest" => Order::Newest,
                    "oldest" => Order::Oldest,
                    o => return Err(format!("unknown order {o:?} (newest or oldest)")),
                }
            }
            "after" if !v.is_empty() => q.after = Some(Cursor::parse(&v)?),
            "limit" if !v.is_empty() => {
                let n: usize = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
                q.limit = n.clamp(1, MAX_PAGE);
            }
            _ => {}
        }
    }
    Ok(ListRequest::List(q))
}

/// The query string of `q` (without `after` when `cursor` is `None`).
pub fn list_query_string(q: &DealQuery, cursor: Option<&Cursor>) -> String {
    let mut parts = Vec::new();
    if q.state != StateFilter::Any {
        parts.push(format!("state={}", q.state.as_param()));
    }
    if let Some(c) = &q.client {
        parts.push(format!("client={}", percent_encode(c)));
    }
    if q.order != Order::Newest {
        parts.push(format!("order={}", q.order.as_param()));
    }
    if q.limit != DEFAULT_PAGE {
        parts.push(format!("limit={}", q.limit));
    }
    if let Some(c) = cursor {
        parts.push(format!("after={}", c.encode()));
    }
    parts.join("&")
}

/// `application/x-www-form-urlencoded` pairs (a query string or a login form),
/// decoded; a pair that does not decode as UTF-8 is dropped.
pub fn query_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b'%' => return None,
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How many deals are in each state code (zeros left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateCounts(pub Vec<(u8, u64)>);

impl StateCounts {
    pub fn get(&self, code: u8) -> u64 {
        self.0.iter().find(|(c, _)| *c == code).map_or(0, |x| x.1)
    }
    /// Deals at `checkpoint`: not failed, and failed there.
    pub fn at(&self, checkpoint: Checkpoint) -> (u64, u64) {
        (
            self.get(state_code(checkpoint, false)),
            self.get(state_code(checkpoint, true)),
        )
    }
    pub fn total(&self) -> u64 {
        self.0.iter().map(|x| x.1).sum()
    }
}

/// Nanoseconds in an hour.
pub const HOUR_NANOS: i64 = 3_600_000_000_000;

/// The hour (since the epoch) a time falls in.
pub fn hour_of(unix_nanos: i64) -> i64 {
    unix_nanos.div_euclid(HOUR_NANOS)
}

/// Deals accepted in one hour, and how many of those have failed since.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourCount {
    pub hour: i64,
    pub accepted: u64,
    pub failed: u64,
}

/// The chart's rows: one per hour from `hours` hours before `now`'s hour up to it, zeros
/// where the store had nothing (`counts` may come in any order, extra hours dropped).
pub fn chart_hours(now_unix_nanos: i64, hours: i64, counts: &[HourCount]) -> Vec<HourCount> {
    let last = hour_of(now_unix_nanos);
    (last - hours + 1..=last)
        .map(|hour| {
            counts
                .iter()
                .find(|c| c.hour == hour)
                .copied()
                .unwrap_or(HourCount {
                    hour,
                    ..HourCount::default()
                })
        })
        .collect()
}

/// Hours the chart covers (three days).
pub const CHART_HOURS: i64 = 72;

/// The download progress in per mille, when the deal is still downloading and its size
/// is known.
pub fn download_per_mille(d: &DealRecord) -> Option<u64> {
    let size = d.params.transfer.size;
    (d.checkpoint == Checkpoint::Accepted && !d.is_failed() && size > 0)
        .then(|| (d.n_bytes_received.min(size) * 1000) / size)
}

pub mod session {
    //! The login session: a cookie `<expiry ms>.<hex HMAC-SHA256(token, "dealport-ui:"
    //! ‖ expiry)>`. The API token is the key, so every node of a cluster (same token)
    //! accepts it, nothing is kept per session, and changing the token ends every
    //! session. Expiry is checked against the time handed in.

    /// The cookie's name.
    pub const COOKIE: &str = "dealport_ui";

    pub use crate::mac::{constant_time_eq, hmac_sha256};

    fn tag(token: &str, expires_ms: i64) -> String {
        let mac = hmac_sha256(
            token.as_bytes(),
            format!("dealport-ui:{expires_ms}").as_bytes(),
        );
        mac.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The outcome of a login form.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Login {
        /// The cookie value to set, valid until `expires_ms`.
        Granted {
            cookie: String,
            expires_ms: i64,
        },
        Refused,
    }

    /// A login with `given` against the configured `token` at `now_ms`. An empty token
    /// (API off) never logs in.
    pub fn login(given: &str, token: &str, now_ms: i64, ttl_ms: i64) -> Login {
        if token.is_empty() || !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            return Login::Refused;
        }
        let expires_ms = now_ms.saturating_add(ttl_ms.max(1));
        Login::Granted {
            cookie: format!("{expires_ms}.{}", tag(token, expires_ms)),
            expires_ms,
        }
    }

    /// Is `cookie` a session signed with `token` that has not expired at `now_ms`?
    pub fn valid(cookie: &str, token: &str, now_ms: i64) -> bool {
        let Some((exp, mac)) = cookie.split_once('.') else {
            return false;
        };
        let Ok(expires_ms) = exp.parse::<i64>() else {
            return false;
        };
        !token.is_empty()
            && now_ms < expires_ms
            && constant_time_eq(mac.as_bytes(), tag(token, expires_ms).as_bytes())
    }

    /// The value of cookie `name` in a `Cookie` header.
    pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
        header.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_round_trip_and_filters_pick_them() {
        for code in all_state_codes() {
            let (c, f) = from_state_code(code).unwrap();
            assert_eq!(state_code(c, f), code);
        }
        assert_eq!(from_state_code(7), None);
        assert_eq!(from_state_code(15), None);
        assert_eq!(StateFilter::Any.codes(), None);
        assert_eq!(StateFilter::Done.codes(), Some(vec![6]));
        assert_eq!(StateFilter::InProgress.codes().unwrap().len(), 6);
        assert!(StateFilter::Failed.codes().unwrap().iter().all(|c| *c >= 8));
        assert_eq!(
            StateFilter::At(Checkpoint::Transferred).codes(),
            Some(vec![1])
        );
    }

    #[test]
    fn the_query_string_reads_and_writes_back() {
        let u = "6b1b7cf8-6d1e-4ac8-9f6c-3a8b7b1b2c3d";
        let qs = format!("state=failed&client=f1abc%2Bx&order=oldest&after=123_{u}&limit=999");
        let ListRequest::List(q) = parse_list_request(&qs).unwrap() else {
            panic!("a list")
        };
        assert_eq!(q.state, StateFilter::Failed);
        assert_eq!(q.client.as_deref(), Some("f1abc+x"));
        assert_eq!(q.order, Order::Oldest);
        assert_eq!(q.limit, MAX_PAGE);
        let after = q.after.unwrap();
        assert_eq!(after.created_at_unix_nanos, 123);
        assert_eq!(
            parse_list_request(&list_query_string(&q, Some(&after))).unwrap(),
            ListRequest::List(q.clone())
        );
        assert!(parse_list_request("state=Nope").is_err());
        assert!(parse_list_request("after=x").is_err());
        assert!(parse_list_request("order=sideways").is_err());
        assert_eq!(
            parse_list_request(&format!("q=+{u}+")).unwrap(),
            ListRequest::Search(SearchKey::Uuid(DealUuid::parse(u).unwrap()))
        );
        assert!(parse_list_request("q=hello").is_err());
        // Bad percent escapes are dropped, not a panic.
        assert_eq!(
            query_pairs("a=%&b=%4&c=%zz&d=ok"),
            vec![("d".into(), "ok".into())]
        );
    }

    #[test]
    fn cursors_order_both_ways() {
        let u = |b: u8| DealUuid([b; 16]);
        let c = Cursor {
            created_at_unix_nanos: 10,
            uuid: u(5),
        };
        assert!(c.precedes(Order::Newest, 10, &u(4)));
        assert!(c.precedes(Order::Newest, 9, &u(9)));
        assert!(!c.precedes(Order::Newest, 10, &u(5)));
        assert!(c.precedes(Order::Oldest, 10, &u(6)));
        assert!(!c.precedes(Order::Oldest, 10, &u(5)));
        assert_eq!(Cursor::parse(&c.encode()), Ok(c));
    }

    #[test]
    fn the_chart_fills_missing_hours_with_zeros() {
        let now = 100 * HOUR_NANOS + 5;
        let rows = chart_hours(
            now,
            3,
            &[
                HourCount {
                    hour: 99,
                    accepted: 4,
                    failed: 1,
                },
                HourCount {
                    hour: 50,
                    accepted: 7,
                    failed: 0,
                },
            ],
        );
        assert_eq!(
            rows.iter().map(|r| r.hour).collect::<Vec<_>>(),
            [98, 99, 100]
        );
        assert_eq!((rows[1].accepted, rows[1].failed), (4, 1));
        assert_eq!(rows[0].accepted + rows[2].accepted, 0);
        assert_eq!(hour_of(-1), -1);
    }

    #[test]
    fn sessions_need_the_token_and_expire() {
        use session::*;
        assert_eq!(login("wrong", "t0k", 0, 1000), Login::Refused);
        assert_eq!(login("", "", 0, 1000), Login::Refused);
        let Login::Granted { cookie, expires_ms } = login("t0k", "t0k", 5_000, 1_000) else {
            panic!("granted")
        };
        assert_eq!(expires_ms, 6_000);
        assert!(valid(&cookie, "t0k", 5_999));
        assert!(!valid(&cookie, "t0k", 6_000), "expired");
        assert!(!valid(&cookie, "other", 5_500), "another token");
        // A later expiry with the old tag does not pass.
        let forged = cookie.replacen("6000", "9000", 1);
        assert!(!valid(&forged, "t0k", 5_500));
        assert!(!valid("garbage", "t0k", 0));
        assert_eq!(
            cookie_value("a=1; dealport_ui=xyz; b=2", COOKIE),
            Some("xyz")
        );
        assert!(constant_time_eq(b"ab", b"ab") && !constant_time_eq(b"ab", b"abc"));
    }
}
