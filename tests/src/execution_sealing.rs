//! Sealing through lotus-miner end to end, black-box: the real `dealport` binary in
//! Lotus chain mode (FakeLotus, the Lotus TEST DOUBLE) with `[sealing] mode =
//! "lotus-miner"` against FakeMiner (testkit; a TEST DOUBLE of lotus-miner that fetches
//! the piece from the URL it is handed, checks its size and piece commitment with its
//! own code, and walks the sector through lotus's states).
//!
//! The double first refuses with "too many sectors sealing" (shown in `SealingStatus`),
//! then takes the piece but loses its answer (a crash between lotus-miner taking it and
//! dealport hearing of it): dealport finds the deal in the miner's sectors and records
//! `AddedPiece` without a third call. Status over libp2p then shows `Sealing: <state>
//! (sector N)` until `Complete`. The piece URL is dead once used (404), as is a forged
//! one.
//!
//! In a two-node PostgreSQL cluster, the holder is killed with SIGKILL while the double
//! holds its answer to an add-piece call it took: the new holder finds the deal in the
//! sector and adds nothing (one call per deal, counted by the double).
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use dealport_testkit::{
    data_server::{DataServer, Serve},
    fake_lotus::FakeLotus,
    fake_miner::{http_get, FakeMiner},
};

use crate::{
    execution_lifecycle::{fake_lotus, Mpool, DEAL_ID},
    execution_transfer::{checkpoint, data, piece_of, poll_until, propose, status},
    harness::{
        cluster::{member, one_leader},
        config,
        golden::A4_CLIENT_KEY_FILE,
        http::request,
        postgres::PgServer,
        process::{DataDir, Node},
    },
};

const UUID: &str = "5b0e4f86-7c1d-4a7e-9a51-0d2c3e4f5a72";
const MINER_TOKEN: &str = "miner-admin-token";
const API_TOKEN: &str = "api-secret";

/// Lotus chain mode against `lotus`, `[sealing] mode = "lotus-miner"` against `miner`.
fn lotus_miner_mode(t: &mut toml::Table, lotus: &FakeLotus, miner: &FakeMiner) {
    t["chain"]["mode"] = "lotus".into();
    t["chain"]["lotus"]["url"] = format!("http://{}/rpc/v1", lotus.addr).into();
    t["chain"]["lotus"]["token"] = "lotus-token".into();
    t["transfer"]["allow_private_addresses"] = true.into();
    t["api"]["token"] = API_TOKEN.into();
    t["publish"]["period_secs"] = 0.into();
    t["publish"]["poll_secs"] = 1.into();
    let sealing: toml::Table = toml::from_str(&format!(
        "mode = \"lotus-miner\"\n[lotus_miner]\nurl = \"http://{}/rpc/v0\"\n\
         token = \"{MINER_TOKEN}\"\npoll_secs = 1\ntoo_many_backoff_secs = 1\n\
         call_timeout_secs = 30\n",
        miner.addr
    ))
    .expect("TOML");
    t.insert("sealing".into(), sealing.into());
}

fn sealing_status(s: &serde_json::Value) -> &str {
    s["deal_status"]["sealing_status"].as_str().unwrap_or("")
}

pub fn deal_goes_from_proposal_to_complete_through_lotus_miner(bin: &str) {
    let mpool = Arc::new(Mutex::new(Mpool::default()));
    mpool.lock().unwrap().landed = true;
    let lotus = fake_lotus(mpool.clone());
    let miner = FakeMiner::start(std::time::Duration::from_millis(1500));
    miner.require_token(MINER_TOKEN);
    miner.refuse_too_many(1);
    miner.lose_answers(1);
    let d = DataDir::for_a4(bin);
    config::edit(&d.path, |t| lotus_miner_mode(t, &lotus, &miner));
    let wallet = d.path.join("client.key");
    std::fs::write(&wallet, A4_CLIENT_KEY_FILE).expect("write the key file");

    let bytes = data(3 << 20, 11);
    let piece = piece_of(&bytes);
    let server = DataServer::start(Serve::new(bytes.clone()));
    let mut node = Node::start(bin, &d.path);
    let ready = node.ready();
    let (p2p, http) = (ready.tcp.to_string(), ready.http);
    let size = bytes.len().to_string();
    let url = server.url("/piece.car");
    propose(
        bin,
        &p2p,
        &wallet,
        UUID,
        &piece,
        &["--car-size", &size, "--url", &url],
    );

    // Back-pressure first: the refusal's sentence, the deal still PublishConfirmed.
    let seen = poll_until(bin, &p2p, &wallet, UUID, "the too-many-sectors wait", |s| {
        sealing_status(s).contains("too many sectors sealing") || s["deal_status"]["error"] != ""
    });
    let last = seen.last().expect("one");
    assert_eq!(checkpoint(last), "PublishConfirmed", "{last}");
    assert_eq!(last["deal_status"]["chain_deal_id"], DEAL_ID);
    assert!(
        sealing_status(last).starts_with("Waiting for lotus-miner: too many sectors sealing"),
        "{last}"
    );
    for s in &seen {
        let cp = checkpoint(s);
        assert!(
            ["Accepted", "Transferred", "Published", "PublishConfirmed"].contains(&cp),
            "{s}"
        );
    }

    // Then the piece is taken (its answer lost), found in sector 12, sealed.
    let seen = poll_until(bin, &p2p, &wallet, UUID, "Complete", |s| {
        checkpoint(s) == "Complete" || s["deal_status"]["error"] != ""
    });
    let last = seen.last().expect("one");
    assert_eq!(checkpoint(last), "Complete", "{last}");
    assert_eq!(last["deal_status"]["error"], "", "{last}");
    let sealing: Vec<&str> = seen
        .iter()
        .filter(|s| checkpoint(s) == "AddedPiece")
        .map(sealing_status)
        .collect();
    assert!(!sealing.is_empty(), "AddedPiece was seen: {seen:?}");
    for s in &sealing {
        assert!(
            s.starts_with("Sealing: ") && s.ends_with(" (sector 12)"),
            "{s}"
        );
    }
    // Exactly two calls: the refused one and the one whose answer was lost; the deal was
    // then found in the sector, not added again.
    assert_eq!(miner.add_calls(DEAL_ID), 2, "errors: {:?}", miner.errors());
    let errors = miner.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("too many sectors sealing"),
        "{errors:?}"
    );

    // The deal as the API shows it: its sector and offset.
    let shown = request(
        http,
        "GET",
        &format!("/api/v1/deals/{UUID}"),
        Some(API_TOKEN),
        None,
    )
    .json();
    assert_eq!(shown["sector_number"], 12, "{shown}");
    assert_eq!(shown["sector_offset"], 0, "{shown}");
    assert_eq!(shown["checkpoint"], "Complete", "{shown}");

    // The piece URLs handed out no longer work, nor does a forged token.
    let urls = miner.urls();
    assert_eq!(urls.len(), 1, "{urls:?}");
    let used = &urls[0];
    assert!(used.contains(&format!("/piece/{UUID}/")), "{used}");
    assert_eq!(http_get(used).unwrap_err(), "HTTP 404");
    let forged = format!("{}{}", &used[..used.len() - 4], "0000");
    assert_eq!(http_get(&forged).unwrap_err(), "HTTP 404");
    let staged = d.path.join("staging").join(format!("{UUID}.data"));
    assert!(!staged.exists(), "staged data removed once in a sector");
    drop(node);
}

/// The deal as the API of the node at `http` shows it.
fn shown(http: std::net::SocketAddr) -> serde_json::Value {
    request(
        http,
        "GET",
        &format!("/api/v1/deals/{UUID}"),
        Some(API_TOKEN),
        None,
    )
    .json()
}

/// kill -9 the lease holder after lotus-miner took the piece and before dealport heard
/// of it, in a two-node PostgreSQL cluster: the new holder finds the deal in the
/// miner's sector and records `AddedPiece` without a second `SectorAddPieceToAny`
/// (the double counts the calls per deal: exactly 1), then follows the sector to
/// `Complete`.
pub fn holder_killed_after_the_miner_took_the_piece_adds_it_once(bin: &str) {
    let mpool = Arc::new(Mutex::new(Mpool::default()));
    mpool.lock().unwrap().landed = true;
    let lotus = fake_lotus(mpool.clone());
    let miner = FakeMiner::start(Duration::from_millis(1000));
    miner.require_token(MINER_TOKEN);
    miner.hold_answers(1);
    let pg = PgServer::start();
    let url = pg.url();
    let mut members = vec![member(bin, "n0"), member(bin, "n1")];
    for m in &mut members {
        config::edit(&m.dir.path, |t| lotus_miner_mode(t, &lotus, &miner));
        m.start(bin, &url);
    }
    let peer = members[0].peer();
    let holder = one_leader(&members, Duration::from_secs(15));
    let standby = 1 - holder;
    let wallet = members[standby].dir.path.join("client.key");
    std::fs::write(&wallet, A4_CLIENT_KEY_FILE).expect("write the key file");

    // Small, so the double's bit-by-bit CommP is quick on a loaded machine.
    let bytes = data(100_000, 23);
    let piece = piece_of(&bytes);
    let server = DataServer::start(Serve::new(bytes.clone()));
    let size = bytes.len().to_string();
    let data_url = server.url("/piece.car");
    // Through the standby's relay, as a client dialling the chain's address would.
    let provider = members[standby].relay(&peer).to_string();
    propose(
        bin,
        &provider,
        &wallet,
        UUID,
        &piece,
        &["--car-size", &size, "--url", &data_url],
    );

    // The double fetched the bytes, checked them and put them in a sector; its answer
    // is held, so the holder has not recorded anything yet.
    let until = Instant::now() + Duration::from_secs(90);
    while miner.pieces_taken(DEAL_ID) == 0 {
        assert!(
            Instant::now() < until,
            "the piece never reached the miner: {:?} {}",
            miner.errors(),
            shown(members[holder].http.expect("started"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = shown(members[holder].http.expect("started"));
    assert_eq!(before["checkpoint"], "PublishConfirmed", "{before}");
    assert_eq!(miner.add_calls(DEAL_ID), 1);

    let mut killed = members[holder].node.take().expect("running");
    killed.signal("KILL");
    killed.wait_exit(Duration::from_secs(5));
    drop(killed);
    miner.release();

    let new_holder = one_leader(&members, Duration::from_secs(20));
    assert_eq!(new_holder, standby);
    let http = members[standby].http.expect("started");
    let until = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let d = shown(http);
        if d["checkpoint"] == "Complete" || !d["error"].is_null() {
            break d;
        }
        assert!(Instant::now() < until, "no Complete in time: {d}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(done["checkpoint"], "Complete", "{done}");
    assert_eq!(done["sector_number"], 12, "{done}");
    assert_eq!(
        miner.add_calls(DEAL_ID),
        1,
        "the new holder added the piece again: {:?}",
        miner.urls()
    );
    assert_eq!(miner.pieces_taken(DEAL_ID), 1);
    assert!(miner.errors().is_empty(), "{:?}", miner.errors());
    // Status over libp2p, through the new holder's relay, tells the client the same.
    let s = status(
        bin,
        &members[standby].relay(&peer).to_string(),
        &wallet,
        UUID,
    );
    assert_eq!(checkpoint(&s), "Complete", "{s}");
    drop(members);
    drop(pg);
}
