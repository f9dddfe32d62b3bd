use super::*;

fn none(failed: &[&str], said: Option<&str>) -> String {
    CallError::NoInstance {
        service: "add".into(),
        failed: failed.iter().map(|s| s.to_string()).collect(),
        said: said.map(str::to_string),
    }
    .to_string()
}

#[test]
fn no_instance_says_what_failed_and_what_the_registry_said() {
    assert_eq!(none(&[], None), "no add instance available");
    assert_eq!(
        none(&[], Some("当前没有可用服务")),
        "no add instance available (registry said: 当前没有可用服务)"
    );
    assert_eq!(
        none(&["a:1", "b:2"], None),
        "no add instance available (failed: a:1, b:2)"
    );
    assert_eq!(
        none(&["a:1"], Some("none")),
        "no add instance available (failed: a:1; registry said: none)"
    );
}
