//! The node's Prometheus metrics, encoded as OpenMetrics text for `GET /metrics`.
//!
//! One [`Metrics`] value per process, shared as `Arc<Metrics>`. Every method is cheap
//! (atomic updates) and never fails. Label values passed in must come from small fixed
//! sets (protocol ids, rejection rule labels, route names), never from client input, so
//! the number of series stays bounded.
//!
//! Layer: bottom; uses no other module of the node.

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

type Labels1 = [(&'static str, String); 1];
type Labels2 = [(&'static str, String); 2];

fn l1(k: &'static str, v: &str) -> Labels1 {
    [(k, v.to_owned())]
}

fn l2(k1: &'static str, v1: &str, k2: &'static str, v2: &str) -> Labels2 {
    [(k1, v1.to_owned()), (k2, v2.to_owned())]
}

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The libp2p host's connection and stream counts, read when the metrics are encoded
/// rather than copied into the gauges on a timer: an idle node then wakes for nothing.
pub type HostCounts = Box<dyn Fn() -> (usize, usize) + Send + Sync>;

/// All metric families of the node, registered under the prefix `dealport`.
pub struct Metrics {
    registry: Registry,
    proposals: Family<Labels2, Counter>,
    status: Family<Labels1, Counter>,
    undecodable: Family<Labels1, Counter>,
    libp2p_connections: Gauge,
    libp2p_streams: Gauge,
    /// Reads the two gauges above when the metrics are encoded (see [`HostCounts`]).
    host_counts: std::sync::Mutex<Option<HostCounts>>,
    relay_active: Gauge,
    relay_opened: Counter,
    relay_handed_off: Counter,
    relay_bytes: Family<Labels1, Counter>,
    relay_rejected: Family<Labels1, Counter>,
    lease_role: Family<Labels1, Gauge>,
    lease_generation: Gauge,
    store_latency: Family<Labels1, Histogram, fn() -> Histogram>,
    http_requests: Family<Labels2, Counter>,
    limit_hits: Family<Labels1, Counter>,
    db_server: Family<Labels2, Gauge>,
    pieces: PieceCounters,
    blocks: BlockCounters,
}

/// `/ipfs/` retrieval and the piece directory: blocks answered, CIDs not held, pieces
/// indexed by outcome, block entries written.
#[derive(Default)]
struct BlockCounters {
    served: Counter,
    not_found: Counter,
    pieces_indexed: Family<Labels1, Counter>,
    entries: Counter,
}

/// `/piece/` retrieval: answers with data, payload bytes sent, pieces not held.
#[derive(Default)]
struct PieceCounters {
    served: Counter,
    bytes: Counter,
    not_found: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn store_histogram() -> Histogram {
    // 100 µs .. ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dealport");
        let proposals = Family::<Labels2, Counter>::default();
        registry.register(
            "deal_proposals",
            "Deal proposals answered, by protocol and outcome (accepted or the rejection rule)",
            proposals.clone(),
        );
        let status = Family::<Labels1, Counter>::default();
        registry.register(
            "status_requests",
            "Deal status requests answered, by outcome",
            status.clone(),
        );
        let undecodable = Family::<Labels1, Counter>::default();
        registry.register(
            "undecodable_requests",
            "Requests that were not one decodable message, by protocol",
            undecodable.clone(),
        );
        let libp2p_connections = Gauge::default();
        registry.register(
            "libp2p_connections",
            "Established libp2p connections",
            libp2p_connections.clone(),
        );
        let libp2p_streams = Gauge::default();
        registry.register(
            "libp2p_streams",
            "libp2p streams being served",
            libp2p_streams.clone(),
        );
        let relay_active = Gauge::default();
        registry.register(
            "relay_active",
            "WebSocket relays currently open",
            relay_active.clone(),
        );
        let relay_opened = Counter::default();
        registry.register(
            "relay_opened",
            "WebSocket relays opened since start",
            relay_opened.clone(),
        );
        let relay_handed_off = Counter::default();
        registry.register(
            "relay_handed_off",
            "WebSocket relays given to this node's own libp2p host in-process instead of dialed",
            relay_handed_off.clone(),
        );
        let relay_bytes = Family::<Labels1, Counter>::default();
        registry.register(
            "relay_bytes",
            "WebSocket message payload bytes relayed, by direction",
            relay_bytes.clone(),
        );
        let relay_rejected = Family::<Labels1, Counter>::default();
        registry.register(
            "relay_rejected",
            "WebSocket upgrade requests not relayed, by reason",
            relay_rejected.clone(),
        );
        let lease_role = Family::<Labels1, Gauge>::default();
        registry.register(
            "lease_role",
            "1 for the role this node holds now (leader or standby), 0 otherwise",
            lease_role.clone(),
        );
        let lease_generation = Gauge::default();
        registry.register(
            "lease_generation",
            "Generation of the lease as this node last saw it",
            lease_generation.clone(),
        );
        let store_latency =
            Family::<Labels1, Histogram, fn() -> Histogram>::new_with_constructor(store_histogram);
        registry.register(
            "store_latency_seconds",
            "Store operation latency, by operation",
            store_latency.clone(),
        );
        let http_requests = Family::<Labels2, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status code",
            http_requests.clone(),
        );
        let limit_hits = Family::<Labels1, Counter>::default();
        registry.register(
            "limit_hits",
            "Connections, streams and requests cut off by a configured limit, by limit",
            limit_hits.clone(),
        );
        let db_server = Family::<Labels2, Gauge>::default();
        registry.register(
            "db_server",
            "1 for the database server this node uses now (host, writable when last asked)",
            db_server.clone(),
        );
        let pieces = PieceCounters::default();
        registry.register(
            "pieces_served",
            "GET /piece/ requests answered with the piece's data (200 or 206)",
            pieces.served.clone(),
        );
        registry.register(
            "piece_bytes_served",
            "Piece bytes sent by GET /piece/",
            pieces.bytes.clone(),
        );
        registry.register(
            "piece_not_found",
            "GET or HEAD /piece/ requests for a piece this node does not hold (404)",
            pieces.not_found.clone(),
        );
        let blocks = BlockCounters::default();
        registry.register(
            "blocks_served",
            "GET /ipfs/ requests answered with a block (raw or a one-block CAR)",
            blocks.served.clone(),
        );
        registry.register(
            "block_not_found",
            "GET or HEAD /ipfs/ requests for a CID this node does not serve (404)",
            blocks.not_found.clone(),
        );
        registry.register(
            "pieces_indexed",
            "Pieces whose indexing ended, by outcome (indexed, not-a-car, malformed)",
            blocks.pieces_indexed.clone(),
        );
        registry.register(
            "block_entries_indexed",
            "Block entries written to the piece directory",
            blocks.entries.clone(),
        );
        Self {
            pieces,
            blocks,
            registry,
            proposals,
            status,
            undecodable,
            libp2p_connections,
            libp2p_streams,
            host_counts: std::sync::Mutex::new(None),
            relay_active,
            relay_opened,
            relay_handed_off,
            relay_bytes,
            relay_rejected,
            lease_role,
            lease_generation,
            store_latency,
            http_requests,
            limit_hits,
            db_server,
        }
    }

    /// The database server in use (`None`: a store with no server).
    pub fn set_db_server(&self, host: Option<&str>, writable: Option<bool>) {
        self.db_server.clear();
        if let (Some(h), Some(w)) = (host, writable) {
            self.db_server
                .get_or_create(&l2("host", h, "writable", if w { "true" } else { "false" }))
                .set(1);
        }
    }

    /// A connection, stream or request was cut off by `limit` (a fixed label such as
    /// `streams_per_peer`, `read_deadline`, `http_header_timeout`).
    pub fn limit_hit(&self, limit: &str) {
        self.limit_hits.get_or_create(&l1("limit", limit)).inc();
    }

    pub fn limit_hits_count(&self, limit: &str) -> u64 {
        self.limit_hits.get_or_create(&l1("limit", limit)).get()
    }

    /// A deal proposal answered on `protocol`; `outcome` is `accepted` or the rejection
    /// rule's label (e.g. `wrong_provider`).
    pub fn proposal(&self, protocol: &str, outcome: &str) {
        self.proposals
            .get_or_create(&l2("protocol", protocol, "outcome", outcome))
            .inc();
    }

    /// A status request answered with `outcome`.
    pub fn status(&self, outcome: &str) {
        self.status.get_or_create(&l1("outcome", outcome)).inc();
    }

    /// A request on `protocol` that did not decode.
    pub fn undecodable(&self, protocol: &str) {
        self.undecodable
            .get_or_create(&l1("protocol", protocol))
            .inc();
    }

    /// Proposals answered so far on `protocol` with `outcome` (for logs and tests).
    pub fn proposals_count(&self, protocol: &str, outcome: &str) -> u64 {
        self.proposals
            .get_or_create(&l2("protocol", protocol, "outcome", outcome))
            .get()
    }

    /// Status requests answered so far with `outcome`.
    pub fn status_count(&self, outcome: &str) -> u64 {
        self.status.get_or_create(&l1("outcome", outcome)).get()
    }

    /// Undecodable requests so far on `protocol`.
    pub fn undecodable_count(&self, protocol: &str) -> u64 {
        self.undecodable
            .get_or_create(&l1("protocol", protocol))
            .get()
    }

    /// Where [`Metrics::encode`] reads the host's connection and stream counts.
    pub fn read_host_counts_from(&self, source: HostCounts) {
        *self.host_counts.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    fn set_libp2p_connections(&self, n: i64) {
        self.libp2p_connections.set(n);
    }

    fn set_libp2p_streams(&self, n: i64) {
        self.libp2p_streams.set(n);
    }

    /// A `GET /piece/` answered with data (the bytes are counted as they go).
    pub fn piece_served(&self) {
        self.pieces.served.inc();
    }

    pub fn piece_bytes(&self, n: u64) {
        self.pieces.bytes.inc_by(n);
    }

    /// A `GET /ipfs/` answered with a block.
    pub fn block_served(&self) {
        self.blocks.served.inc();
    }

    /// A `/ipfs/` request for a CID this node does not serve.
    pub fn block_not_found(&self) {
        self.blocks.not_found.inc();
    }

    /// A piece's indexing ended with `outcome` (an `IndexState` name).
    pub fn piece_indexed(&self, outcome: &'static str) {
        self.blocks
            .pieces_indexed
            .get_or_create(&l1("outcome", outcome))
            .inc();
    }

    /// `n` block entries written to the piece directory.
    pub fn block_entries(&self, n: u64) {
        self.blocks.entries.inc_by(n);
    }

    /// A `/piece/` request for a piece this node does not hold.
    pub fn piece_not_found(&self) {
        self.pieces.not_found.inc();
    }

    /// A WebSocket relay was established (the client got its 101).
    pub fn relay_opened(&self) {
        self.relay_active.inc();
        self.relay_opened.inc();
    }

    /// An established relay went to this node's own host (counted as opened too).
    pub fn relay_handed_off(&self) {
        self.relay_handed_off.inc();
    }

    /// An established relay ended.
    pub fn relay_closed(&self) {
        self.relay_active.dec();
    }

    /// `n` payload bytes relayed; `direction` is `client_to_host` or `host_to_client`.
    pub fn relay_bytes(&self, direction: &str, n: u64) {
        self.relay_bytes
            .get_or_create(&l1("direction", direction))
            .inc_by(n);
    }

    /// The two byte counters of [`Metrics::relay_bytes`] (client to host, host to client),
    /// for a relay that counts without a label lookup per read.
    pub fn relay_byte_counters(&self) -> (Counter, Counter) {
        let get = |d: &str| self.relay_bytes.get_or_create(&l1("direction", d)).clone();
        (get("client_to_host"), get("host_to_client"))
    }

    /// An upgrade request that was not relayed, e.g. `no_target`, `limit`, `unreachable`.
    pub fn relay_rejected(&self, reason: &str) {
        self.relay_rejected
            .get_or_create(&l1("reason", reason))
            .inc();
    }

    /// The lease role this node holds now (`leader` or `standby`) and the generation seen.
    pub fn set_lease(&self, role: &str, generation: i64) {
        for r in ["leader", "standby"] {
            self.lease_role
                .get_or_create(&l1("role", r))
                .set(i64::from(r == role));
        }
        if role != "leader" && role != "standby" {
            self.lease_role.get_or_create(&l1("role", role)).set(1);
        }
        self.lease_generation.set(generation);
    }

    /// One store operation `op` took `seconds`.
    pub fn store_latency(&self, op: &str, seconds: f64) {
        self.store_latency
            .get_or_create(&l1("op", op))
            .observe(seconds);
    }

    /// An HTTP request on `route` (a fixed route name, not the raw path) answered `code`.
    pub fn http_request(&self, route: &str, code: u16) {
        self.http_requests
            .get_or_create(&l2("route", route, "code", &code.to_string()))
            .inc();
    }

    /// All metrics as OpenMetrics text, ending with `# EOF`.
    pub fn encode(&self) -> String {
        if let Some(counts) = &*self.host_counts.lock().unwrap_or_else(|e| e.into_inner()) {
            let (connections, streams) = counts();
            self.set_libp2p_connections(i64::try_from(connections).unwrap_or(i64::MAX));
            self.set_libp2p_streams(i64::try_from(streams).unwrap_or(i64::MAX));
        }
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A strict check of the OpenMetrics text grammar we rely on. Returns the samples.
    fn parse(text: &str) -> HashMap<String, f64> {
        let mut samples = HashMap::new();
        let mut declared: HashMap<String, String> = HashMap::new(); // family -> type
        let mut helped: Vec<String> = Vec::new();
        let lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines.last(), Some(&""), "output ends with a newline");
        let lines = &lines[..lines.len() - 1];
        assert_eq!(lines.last(), Some(&"# EOF"), "last line is # EOF");
        for line in &lines[..lines.len() - 1] {
            assert!(!line.is_empty(), "no empty lines");
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _help) = rest.split_once(' ').expect("HELP name text");
                helped.push(name.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').expect("TYPE name type");
                assert!(
                    ["counter", "gauge", "histogram", "info", "unknown"].contains(&ty),
                    "type {ty}"
                );
                assert_eq!(
                    helped.last().map(String::as_str),
                    Some(name),
                    "HELP before TYPE"
                );
                assert!(
                    declared.insert(name.to_owned(), ty.to_owned()).is_none(),
                    "one TYPE per family"
                );
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment line {line}");
            // name{labels} value
            let (series, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("numeric value in {line}")),
            };
            let name = match series.find('{') {
                Some(i) => {
                    assert!(series.ends_with('}'), "labels closed in {line}");
                    let labels = &series[i + 1..series.len() - 1];
                    for pair in labels.split(',') {
                        let (k, v) = pair.split_once('=').expect("label k=v");
                        assert!(
                            k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                            "label name {k}"
                        );
                        assert!(
                            v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                            "quoted {v}"
                        );
                    }
                    &series[..i]
                }
                None => series,
            };
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "metric name {name}"
            );
            let family = declared
                .keys()
                .filter(|f| {
                    name == f.as_str()
                        || name.strip_prefix(f.as_str()).is_some_and(|s| {
                            ["_total", "_bucket", "_sum", "_count", "_created"].contains(&s)
                        })
                })
                .max_by_key(|f| f.len());
            assert!(family.is_some(), "sample {name} follows its TYPE line");
            samples.insert(series.to_owned(), value);
        }
        samples
    }

    #[test]
    fn empty_registry_encodes() {
        let m = Metrics::new();
        let s = parse(&m.encode());
        assert_eq!(s.get("dealport_relay_active"), Some(&0.0));
        assert_eq!(s.get("dealport_relay_opened_total"), Some(&0.0));
    }

    #[test]
    fn host_counts_are_read_when_encoding() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let m = Metrics::new();
        let connections = std::sync::Arc::new(AtomicUsize::new(2));
        let seen = connections.clone();
        m.read_host_counts_from(Box::new(move || (seen.load(Ordering::Relaxed), 5)));
        let get = |text: &str, k: &str| parse(text)[k];
        assert_eq!(get(&m.encode(), "dealport_libp2p_connections"), 2.0);
        connections.store(9, Ordering::Relaxed);
        let text = m.encode();
        assert_eq!(get(&text, "dealport_libp2p_connections"), 9.0);
        assert_eq!(get(&text, "dealport_libp2p_streams"), 5.0);
    }

    #[test]
    fn counters_move_and_output_parses() {
        let m = Metrics::new();
        m.proposal("/fil/storage/mk/1.2.1", "accepted");
        m.proposal("/fil/storage/mk/1.2.1", "accepted");
        m.proposal("/fil/storage/mk/1.2.0", "wrong_provider");
        m.status("ok");
        m.undecodable("/fil/storage/mk/1.2.1");
        m.set_libp2p_connections(3);
        m.set_libp2p_streams(7);
        m.relay_opened();
        m.relay_opened();
        m.relay_closed();
        m.relay_bytes("client_to_host", 100);
        m.relay_bytes("host_to_client", 250);
        m.relay_bytes("client_to_host", 1);
        m.relay_rejected("limit");
        m.set_lease("leader", 42);
        m.store_latency("put_deal", 0.003);
        m.store_latency("put_deal", 10.0);
        m.http_request("health", 200);
        let text = m.encode();
        let s = parse(&text);
        let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("{k} missing in\n{text}"));
        assert_eq!(
            get(
                r#"dealport_deal_proposals_total{protocol="/fil/storage/mk/1.2.1",outcome="accepted"}"#
            ),
            2.0
        );
        assert_eq!(
            get(
                r#"dealport_deal_proposals_total{protocol="/fil/storage/mk/1.2.0",outcome="wrong_provider"}"#
            ),
            1.0
        );
        assert_eq!(get(r#"dealport_status_requests_total{outcome="ok"}"#), 1.0);
        assert_eq!(
            get(r#"dealport_undecodable_requests_total{protocol="/fil/storage/mk/1.2.1"}"#),
            1.0
        );
        assert_eq!(get("dealport_libp2p_connections"), 3.0);
        assert_eq!(get("dealport_libp2p_streams"), 7.0);
        assert_eq!(get("dealport_relay_active"), 1.0);
        assert_eq!(get("dealport_relay_opened_total"), 2.0);
        assert_eq!(
            get(r#"dealport_relay_bytes_total{direction="client_to_host"}"#),
            101.0
        );
        assert_eq!(
            get(r#"dealport_relay_bytes_total{direction="host_to_client"}"#),
            250.0
        );
        assert_eq!(get(r#"dealport_relay_rejected_total{reason="limit"}"#), 1.0);
        assert_eq!(get(r#"dealport_lease_role{role="leader"}"#), 1.0);
        assert_eq!(get(r#"dealport_lease_role{role="standby"}"#), 0.0);
        assert_eq!(get("dealport_lease_generation"), 42.0);
        assert_eq!(
            get(r#"dealport_store_latency_seconds_count{op="put_deal"}"#),
            2.0
        );
        assert_eq!(
            get(r#"dealport_store_latency_seconds_bucket{le="+Inf",op="put_deal"}"#),
            2.0
        );
        assert_eq!(
            get(r#"dealport_http_requests_total{route="health",code="200"}"#),
            1.0
        );

        m.set_lease("standby", 43);
        let s = parse(&m.encode());
        assert_eq!(s.get(r#"dealport_lease_role{role="leader"}"#), Some(&0.0));
        assert_eq!(s.get(r#"dealport_lease_role{role="standby"}"#), Some(&1.0));
    }
}
