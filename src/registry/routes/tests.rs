use super::*;
use crate::http::parse_request;
use crate::registry::doors::Door;
use crate::registry::Config;

fn answer(raw: &str) -> Response {
    let (req, _) = parse_request(raw.as_bytes()).unwrap().unwrap();
    smol::block_on(Routes::new(Arc::new(Shared::new(Config::default()))).answer(&req))
}

#[test]
fn each_route_and_door_counts_under_its_own_name() {
    assert_eq!(ROUTE_NAMES[Route::RegisterList as usize], "registerList");
    assert_eq!(ROUTE_NAMES[Route::Page as usize], "page");
    assert_eq!(
        ROUTE_NAMES[DOORS_FROM + Door::Register as usize],
        "consulRegister"
    );
    assert_eq!(
        ROUTE_NAMES[DOORS_FROM + Door::PromSd as usize],
        "prometheusSd"
    );
    assert_eq!(ROUTE_NAMES[UNMATCHED], "unmatched");
}

/// Found by the `routes` fuzz target: the 404 echoed decoded path segments verbatim, so a
/// percent-encoded CR or LF split the one-line error reply.
#[test]
fn deregistering_an_unknown_address_with_control_bytes_answers_one_line() {
    let resp = answer("DELETE /v1/services/a%0Db/127.0.0.1%0A22%1B HTTP/1.1\r\n\r\n");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.body, b"127.0.0.122 is not registered in ab\n");
}
