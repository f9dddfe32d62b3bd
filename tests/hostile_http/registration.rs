//! Bad registrations, through mini's own routes (issue 11) and Consul's (issue 12): each field's
//! 400 with its one-line reason, and nothing registered.

use super::*;

/// A registration's bad fields (issue 11): each one, in the query or in a JSON body, `(what, request
/// target, body, the reason the 400 must give)`.
fn bad_registration_fields() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let put = |query: &str| format!("/v1/services/web/127.0.0.1:8000?{query}");
    let many = |pair: &dyn Fn(usize) -> String| -> String {
        (0..17).map(|i| format!("{}&", pair(i))).collect()
    };
    let bare = "/v1/services/web/127.0.0.1:8000".to_string();
    vec![
        ("an unknown check", put("check=grpc"), "", "bad check: use http:/PATH, tcp or none"),
        ("a check path without /", put("check=http:healthz"), "", "bad check path: must start with /"),
        ("a check path of 257 bytes", put(&format!("check=http:/{}", "a".repeat(256))), "", "bad check path: longer than 256 bytes"),
        ("a check path with a space", put("check=http:/a%20b"), "", "bad check path: not printable ASCII"),
        ("17 tags", put(&many(&|i| format!("tag=t{i}"))), "", "too many tags (max 16)"),
        ("an empty tag", put("tag="), "", "bad tag: 1 to 128 bytes of printable ASCII"),
        ("a tag of 129 bytes", put(&format!("tag={}", "x".repeat(129))), "", "bad tag: 1 to 128 bytes"),
        ("a control byte in a tag", put("tag=a%01"), "", "bad tag: 1 to 128 bytes"),
        ("a tag of non-ASCII UTF-8", put("tag=%C3%A9"), "", "bad tag: 1 to 128 bytes"),
        ("meta without a colon", put("meta=zone"), "", "bad meta: use KEY:VALUE"),
        ("meta with an empty key", put("meta=:a"), "", "bad meta key: 1 to 128 bytes"),
        ("meta with an empty value", put("meta=a:"), "", "bad meta value: 1 to 128 bytes"),
        ("17 meta pairs", put(&many(&|i| format!("meta=k{i}:v"))), "", "too many meta pairs (max 16)"),
        ("weight 0", put("weight=0"), "", "bad weight: an integer from 1 to 1000"),
        ("weight 1001", put("weight=1001"), "", "bad weight: an integer from 1 to 1000"),
        ("a negative weight", put("weight=-1"), "", "bad weight"),
        ("a weight of 2^64", put("weight=18446744073709551616"), "", "bad weight"),
        ("an empty weight", put("weight="), "", "bad weight"),
        ("a ttl that is no duration", put("ttl=forever"), "", "bad ttl"),
        ("a ttl over an hour", put("ttl=2h"), "", "ttl longer than 3600s"),
        ("a body that is not JSON", bare.clone(), "{\"check\":", "bad body: bad JSON at byte"),
        ("a body that is not an object", bare.clone(), "[1]", "bad body: not a JSON object"),
        ("a body nested too deeply", bare.clone(), "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "bad body: bad JSON at byte"),
        ("tags that are a string", bare.clone(), r#"{"tags":"v2"}"#, "bad body: tags has the wrong type"),
        ("a tag that is a number", bare.clone(), r#"{"tags":[2]}"#, "bad body: tags has the wrong type"),
        ("meta that is an array", bare.clone(), r#"{"meta":["a"]}"#, "bad body: meta has the wrong type"),
        ("a meta value that is a number", bare.clone(), r#"{"meta":{"a":1}}"#, "bad body: meta has the wrong type"),
        ("a check that is a number", bare.clone(), r#"{"check":1}"#, "bad body: check has the wrong type"),
        ("a ttl that is a number", bare.clone(), r#"{"ttl":15}"#, "bad body: ttl has the wrong type"),
        ("a weight of 0 in the body", bare.clone(), r#"{"weight":0}"#, "bad weight"),
        ("a weight that is a float", bare.clone(), r#"{"weight":1.5}"#, "bad body: weight has the wrong type"),
        ("an unknown check in the body", bare.clone(), r#"{"check":"grpc"}"#, "bad check"),
        ("an empty tag in the body", bare.clone(), r#"{"tags":[""]}"#, "bad tag"),
        ("17 tags in the body", bare.clone(), r#"{"tags":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]}"#, "too many tags (max 16)"),
        ("a bad ttl in the body", bare.clone(), r#"{"ttl":"soon"}"#, "bad ttl"),
        // The query wins, and its bad field is refused even with a good body.
        ("a bad query field over a good body", put("weight=0"), r#"{"weight":5}"#, "bad weight"),
        ("a good query field over a bad body field", put("weight=5"), r#"{"weight":0}"#, "bad weight"),
    ]
}

/// Sends `PUT target` with the JSON `body` (the case `what`) on `client`: a one-line 400 whose text
/// starts with `reason`, and the connection stays open.
async fn assert_bad_put(client: &mut Client, what: &str, target: &str, body: &str, reason: &str) {
    let raw = format!(
        "PUT {target} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    client.send(&raw).await;
    let resp = client.response().await;
    assert_error_reply(&resp, 400, what);
    assert!(resp.text().starts_with(reason), "{what}: {:?}", resp.text());
    assert_eq!(resp.header("Connection"), None, "{what}: kept open");
}

/// Sends `METHOD target` without a body on `client`: an error reply with `status` whose text starts
/// with `reason`; the reply.
async fn assert_bad_request(
    client: &mut Client,
    method: &str,
    target: &str,
    status: u16,
    reason: &str,
) -> RawResponse {
    let what = format!("{method} {target}");
    client
        .send(format!("{method} {target} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .await;
    let resp = client.response().await;
    assert_error_reply(&resp, status, &what);
    assert!(resp.text().starts_with(reason), "{what}: {:?}", resp.text());
    resp
}

#[test]
fn every_bad_registration_field_is_400_with_its_reason_and_registers_nothing() {
    let registry = Proc::registry(&["--probe-interval", "60s"]);
    rt::block_on(async {
        let addr = socket(&registry);
        let mut client = Client::connect(addr).await;
        for (what, target, body, reason) in bad_registration_fields() {
            assert_bad_put(&mut client, what, &target, body, reason).await;
        }
        // Lookups and listings with more tags than an instance may carry, and drains of nothing.
        for (method, target, status, reason) in [
            (
                "GET",
                format!("/serviceAddr?queryParam=web&{}", "tag=a&".repeat(17)),
                400,
                "too many tags (max 16)",
            ),
            (
                "GET",
                format!("/v1/services/web?{}", "tag=a&".repeat(17)),
                400,
                "too many tags (max 16)",
            ),
            (
                "POST",
                "/v1/services/web/127.0.0.1:8000/drain".to_string(),
                404,
                "127.0.0.1:8000 is not registered in web",
            ),
            (
                "DELETE",
                "/v1/services/web/127.0.0.1:8000/drain".to_string(),
                404,
                "127.0.0.1:8000 is not registered in web",
            ),
            (
                "GET",
                "/v1/services/web/127.0.0.1:8000/drain".to_string(),
                405,
                "method GET not allowed here",
            ),
        ] {
            assert_bad_request(&mut client, method, &target, status, reason).await;
        }
        assert_still_serves(addr, "bad registration fields").await;
    });
    let (status, body) = procs::get(&registry.addr, "/v1/services");
    assert_eq!((status, body.as_str()), (200, ""), "something registered");
}

/// Bad Consul registration bodies (issue 12): `(what, body, the reason the 400 must give)`.
#[rustfmt::skip]
fn bad_consul_registrations() -> Vec<(&'static str, String, &'static str)> {
    let with =
        |extra: &str| format!(r#"{{"Name":"web","Port":8000,"Address":"127.0.0.1"{extra}}}"#);
    let tags = |n: usize| {
        let list: Vec<String> = (0..n).map(|i| format!("\"t{i}\"")).collect();
        with(&format!(r#","Tags":[{}]"#, list.join(",")))
    };
    let meta = |n: usize| {
        let pairs: Vec<String> = (0..n).map(|i| format!("\"k{i}\":\"v\"")).collect();
        with(&format!(r#","Meta":{{{}}}"#, pairs.join(",")))
    };
    vec![
        ("an empty body", String::new(), "bad body: bad JSON at byte 0"),
        ("a body that is not JSON", "Name=web".into(), "bad body: bad JSON at byte 0"),
        ("a cut-off body", r#"{"Name":"web","Port":"#.into(), "bad body: bad JSON"),
        ("an unknown escape in a string", r#"{"Name":"w\xff","Port":8000,"Address":"127.0.0.1"}"#.into(), "bad body: bad JSON"),
        ("a body that is an array", r#"[{"Name":"web"}]"#.into(), "bad body: not a JSON object"),
        ("a body that is a string", r#""web""#.into(), "bad body: not a JSON object"),
        ("60 000 nested arrays", format!(r#"{{"Name":"web","Meta":{}"#, "[".repeat(60_000)), "bad body: bad JSON"),
        ("10 000 nested objects", format!(r#"{{"Name":"web","Meta":{}"#, "{\"a\":".repeat(10_000)), "bad body: bad JSON"),
        ("17 distinct tags", tags(17), "too many tags (max 16)"),
        ("5000 distinct tags", tags(5000), "too many tags (max 16)"),
        ("a tag of 129 bytes", with(&format!(r#","Tags":["{}"]"#, "x".repeat(129))), "bad tag"),
        ("a tag with a control byte", with(r#","Tags":["a\u0001"]"#), "bad tag"),
        ("17 meta pairs", meta(17), "too many meta pairs (max 16)"),
        ("no Name", r#"{"Port":8000,"Address":"127.0.0.1"}"#.into(), "missing Name"),
        ("a Name that is a number", r#"{"Name":7,"Port":8000,"Address":"127.0.0.1"}"#.into(), "bad Name: not a string"),
        ("a Name with a space", r#"{"Name":"a b","Port":8000,"Address":"127.0.0.1"}"#.into(), "bad Name"),
        ("an ID that is a number", with(r#","ID":7"#), "bad ID: not a string"),
        ("an ID with a space", with(r#","ID":"a b""#), "bad ID"),
        ("an ID of 129 bytes", with(&format!(r#","ID":"{}""#, "i".repeat(129))), "bad ID"),
        ("no Port", r#"{"Name":"web","Address":"127.0.0.1"}"#.into(), "missing Port"),
        ("a Port that is a string", r#"{"Name":"web","Port":"8000","Address":"127.0.0.1"}"#.into(), "bad Port: not a number"),
        ("a Port that is a float", r#"{"Name":"web","Port":80.5,"Address":"127.0.0.1"}"#.into(), "bad Port"),
        ("a Port of 0", r#"{"Name":"web","Port":0,"Address":"127.0.0.1"}"#.into(), "bad Port"),
        ("a Port of 2^64", r#"{"Name":"web","Port":18446744073709551616,"Address":"127.0.0.1"}"#.into(), "bad Port"),
        ("an Address that is a number", r#"{"Name":"web","Port":8000,"Address":2130706433}"#.into(), "bad Address: not a string"),
        ("an Address with a port", r#"{"Name":"web","Port":8000,"Address":"127.0.0.1:80"}"#.into(), "bad Address"),
        ("an Address with a NUL", r#"{"Name":"web","Port":8000,"Address":"127.0.0.1\u0000"}"#.into(), "bad Address"),
        ("Tags that are an object", with(r#","Tags":{"a":1}"#), "bad Tags: not an array"),
        ("a tag that is a number", with(r#","Tags":[1]"#), "bad Tags: not strings"),
        ("Meta that is an array", with(r#","Meta":["a"]"#), "bad Meta: not an object"),
        ("a Meta value that is a number", with(r#","Meta":{"a":1}"#), "bad Meta: values must be strings"),
        ("a weight that is a string", with(r#","Weights":{"Passing":"3"}"#), "bad weight"),
        ("a weight of 0", with(r#","Weights":{"Passing":0}"#), "bad weight"),
        ("a Check that is a string", with(r#","Check":"tcp""#), "bad Check"),
        ("Checks that are an object", with(r#","Checks":{"TCP":"127.0.0.1:8000"}"#), "bad Checks: not an array"),
        ("two Checks", with(r#","Checks":[{"TCP":"127.0.0.1:8000"},{"TTL":"5s"}]"#), "bad Checks: mini runs at most one check per service"),
        ("a gRPC check", with(r#","Check":{"GRPC":"127.0.0.1:8000"}"#), "bad Check: mini runs HTTP, TCP or TTL checks"),
        ("a TTL that is a number", with(r#","Check":{"TTL":15}"#), "bad TTL: not a string"),
        ("a TTL that is no duration", with(r#","Check":{"TTL":"soon"}"#), "bad TTL"),
        ("a TTL over an hour", with(r#","Check":{"TTL":"2h"}"#), "bad TTL: must be 1ms to 1h"),
        ("an HTTP check that is a number", with(r#","Check":{"HTTP":80}"#), "bad HTTP: not a string"),
        ("an HTTP check on another host", with(r#","Check":{"HTTP":"http://169.254.169.254:8000/latest/meta-data"}"#), "bad Check.HTTP: must be on the service's own Address and Port"),
        ("an HTTP check on another port", with(r#","Check":{"HTTP":"http://127.0.0.1:22/"}"#), "bad Check.HTTP: must be on the service's own Address and Port"),
        ("an HTTPS check", with(r#","Check":{"HTTP":"https://127.0.0.1:8000/"}"#), "bad Check.HTTP: mini probes http:// URLs only"),
        ("an HTTP check path with a space", with(r#","Check":{"HTTP":"http://127.0.0.1:8000/a b"}"#), "bad check path"),
    ]
}

#[test]
fn every_bad_consul_registration_is_400_with_one_line_and_registers_nothing() {
    let registry = Proc::registry(&["--probe-interval", "60s"]);
    rt::block_on(async {
        let addr = socket(&registry);
        let mut client = Client::connect(addr).await;
        for (what, body, reason) in bad_consul_registrations() {
            let target = "/v1/agent/service/register";
            assert_bad_put(&mut client, what, target, &body, reason).await;
        }
        // Raw bytes that are not UTF-8 inside a string.
        let body = b"{\"Name\":\"w\xff\xfe\",\"Port\":8000,\"Address\":\"127.0.0.1\"}";
        let head = format!(
            "PUT /v1/agent/service/register HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        client.send([head.as_bytes(), &body[..]].concat()).await;
        let resp = client.response().await;
        assert_error_reply(&resp, 400, "raw non-UTF-8 in a string");
        assert!(
            resp.text().starts_with("bad body: bad JSON"),
            "{:?}",
            resp.text()
        );
        // Over the body cap: 413, one line, before the body is read.
        let body = format!(r#"{{"Name":"web","Tags":[{}]}}"#, "\"t\",".repeat(40_000));
        let raw = format!(
            "PUT /v1/agent/service/register HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let responses = parse_responses(&raw_exchange(addr, raw).await);
        assert_eq!(responses.len(), 1, "{responses:?}");
        assert_error_reply(&responses[0], 413, "a 160 KB registration");
        // Check updates and deregistrations of nothing, and a maintenance without `enable`.
        for (method, target, status, reason) in [
            (
                "PUT",
                "/v1/agent/check/pass/service:nothing",
                404,
                "unknown service ID nothing",
            ),
            ("PUT", "/v1/agent/check/fail/web", 404, "unknown check web"),
            (
                "GET",
                "/v1/agent/check/warn/service:%00",
                404,
                "unknown service ID",
            ),
            (
                "PUT",
                "/v1/agent/service/deregister/nothing",
                404,
                "unknown service ID nothing",
            ),
            (
                "PUT",
                "/v1/agent/service/maintenance/nothing",
                400,
                "missing enable=true|false",
            ),
            (
                "PUT",
                "/v1/agent/service/maintenance/nothing?enable=yes",
                400,
                "missing enable=true|false",
            ),
            (
                "PUT",
                "/v1/agent/service/maintenance/nothing?enable=true",
                404,
                "unknown service ID nothing",
            ),
            (
                "GET",
                "/v1/health/service/web?index=1&wait=forever",
                400,
                "bad wait",
            ),
            ("GET", "/v1/health/service/web?index=-1", 400, "bad index"),
        ] {
            let resp = assert_bad_request(&mut client, method, target, status, reason).await;
            assert!(
                !resp.text().contains('\0'),
                "{method} {target}: a NUL echoed"
            );
        }
        assert_still_serves(addr, "bad Consul registrations").await;
    });
    let (status, body) = procs::get(&registry.addr, "/v1/services");
    assert_eq!((status, body.as_str()), (200, ""), "something registered");
    let (status, body) = procs::get(&registry.addr, "/v1/catalog/services");
    assert_eq!((status, body.as_str()), (200, "{}"), "something registered");
}
