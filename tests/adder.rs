//! The adder's routes and the client's argument checks, through the real binary.

mod common;

use common::procs::{client, get, Proc};

#[test]
fn adds_path_segments_and_query_parameters() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let adder = Proc::adder(&reg.addr);
    assert_eq!(get(&adder.addr, "/Add/5/6"), (200, "11".to_string()));
    assert_eq!(get(&adder.addr, "/Add/-5/2"), (200, "-3".to_string()));
    assert_eq!(get(&adder.addr, "/Add?a=40&b=2"), (200, "42".to_string()));
    assert_eq!(
        get(&adder.addr, "/Add/-9223372036854775808/0").1,
        "-9223372036854775808"
    );
    assert_eq!(get(&adder.addr, "/aliveCheck").0, 200);
}

#[test]
fn bad_numbers_and_overflow_are_400_with_a_reason() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let adder = Proc::adder(&reg.addr);
    for (target, reason) in [
        ("/Add/x/6", "is not an integer"),
        ("/Add/1.5/6", "is not an integer"),
        ("/Add/99999999999999999999/1", "is not an integer"),
        ("/Add/9223372036854775807/1", "overflows"),
        ("/Add/-9223372036854775808/-1", "overflows"),
        ("/Add?a=1", "need a and b"),
    ] {
        let (status, body) = get(&adder.addr, target);
        assert_eq!(status, 400, "{target}: {body}");
        assert!(body.contains(reason), "{target}: {body:?}");
        assert!(
            body.ends_with('\n') && body.lines().count() == 1,
            "{target}: {body:?}"
        );
    }
    assert_eq!(get(&adder.addr, "/Add/1/2/3").0, 404);
}

#[test]
fn the_client_reports_overflow_without_looping() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let _adder = Proc::adder(&reg.addr);
    common::procs::eventually("registered", || {
        !common::procs::healthy(&reg.addr).is_empty()
    });
    let out = client(&["9223372036854775807", "1", "--registry", &reg.addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("overflows"));
}

#[test]
fn bad_client_arguments_exit_2_with_usage() {
    for args in [
        &["five", "6"][..],
        &["5"][..],
        &["5", "6", "7"][..],
        &["5", "99999999999999999999"][..],
        &["5", "6", "--registry", "nowhere"][..],
        &["5", "6", "--repeat", "0"][..],
        &["5", "6", "--service", "a b"][..],
    ] {
        let out = client(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("usage: mini"), "{args:?}: {stderr}");
    }
}

#[test]
fn version_is_printed_and_exits_0() {
    for flag in ["--version", "-V"] {
        let out = common::procs::mini().arg(flag).output().expect("run mini");
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let expected = format!("mini {}\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{flag}");
        assert!(out.stderr.is_empty(), "{flag}");
    }
}

#[test]
fn negative_operands_are_numbers_not_flags() {
    let reg = Proc::registry(&["--probe-interval", "60s"]);
    let _adder = Proc::adder(&reg.addr);
    common::procs::eventually("registered", || {
        !common::procs::healthy(&reg.addr).is_empty()
    });
    let out = client(&["-5", "-6", "--registry", &reg.addr]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "-11\n");
}
