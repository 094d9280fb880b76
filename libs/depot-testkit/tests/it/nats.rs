//! `nats_url` against the real nats-server named by `DEPOT_TEST_NATS_URL`.

use std::io::{BufRead as _, BufReader};

use depot_testkit::nats_url;

#[test]
fn the_configured_nats_server_is_current_and_has_jetstream() {
    let url = nats_url();
    assert_eq!(
        Ok(url.as_str()),
        std::env::var("DEPOT_TEST_NATS_URL").as_deref()
    );

    // nats_url() already checked the greeting; look once more to show what was accepted.
    let address = url.trim_start_matches("nats://");
    let stream = std::net::TcpStream::connect(address).unwrap();
    let mut greeting = String::new();
    BufReader::new(stream).read_line(&mut greeting).unwrap();
    let info: serde_json::Value =
        serde_json::from_str(greeting.trim_start_matches("INFO ").trim()).unwrap();
    assert_eq!(info["jetstream"], true, "{greeting}");
}
