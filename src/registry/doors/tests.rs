//! Unit tests of the doors' ID resolution.

use super::*;
use crate::registry::Config;

const LEASE: Duration = Duration::from_secs(60);

/// Doors over a fresh in-memory registry holding `(service, addr)`.
fn doors_with(instances: &[(&str, &str)]) -> Doors {
    let doors = Doors::new(Arc::new(Shared::new(Config::default())));
    rt::block_on(async {
        for (service, addr) in instances {
            let registered = doors.shared.register(service, addr, LEASE, None).await;
            assert!(registered.is_ok(), "{service} {addr}: {registered:?}");
        }
    });
    doors
}

#[test]
fn a_host_port_id_resolves_to_the_service_holding_it() {
    let doors = doors_with(&[
        ("web", "127.0.0.1:8000"),
        ("web", "127.0.0.1:8001"),
        ("api", "10.0.0.1:80"),
    ]);
    let known = doors.resolve("127.0.0.1:8001").expect("registered");
    assert_eq!(
        (known.service.as_str(), known.addr.as_str()),
        ("web", "127.0.0.1:8001")
    );
    assert_eq!((known.ttl, known.warning), (None, false));
    assert_eq!(
        doors.resolve("10.0.0.1:80").map(|k| k.service).as_deref(),
        Some("api")
    );
    assert!(doors.resolve("127.0.0.1:9").is_none());
    assert!(doors.resolve("web").is_none());
}

#[test]
fn an_address_in_several_services_resolves_to_the_first_by_name() {
    let doors = doors_with(&[
        ("web", "127.0.0.1:8000"),
        ("api", "127.0.0.1:8000"),
        ("zed", "127.0.0.1:8000"),
    ]);
    for _ in 0..3 {
        let known = doors.resolve("127.0.0.1:8000").expect("registered");
        assert_eq!(known.service, "api");
    }
}

#[test]
fn an_id_registered_through_the_consul_door_wins_over_an_address() {
    let doors = doors_with(&[("web", "127.0.0.1:8000")]);
    rt::lock(&doors.ids).insert(
        "127.0.0.1:8000".to_string(),
        Known {
            service: "db".to_string(),
            addr: "127.0.0.1:5432".to_string(),
            ttl: Some(LEASE),
            warning: false,
        },
    );
    let known = doors.resolve("127.0.0.1:8000").expect("known");
    assert_eq!(
        (known.service.as_str(), known.addr.as_str(), known.ttl),
        ("db", "127.0.0.1:5432", Some(LEASE))
    );
}
