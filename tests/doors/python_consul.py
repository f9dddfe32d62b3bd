"""python-consul (Debian's python3-consul 0.7) against mini's Consul door.

Usage: python_consul.py REGISTRY_HOST REGISTRY_PORT SERVICE_PORT SECOND_PORT [THIRD_PORT]
Registers `web` with a TCP check on SERVICE_PORT, waits until health.service(passing=True) has it,
runs a blocking query that must return on a change (a second instance registering), puts one in
maintenance and back, reads health.state and an absent KV key (at once and blocking),
deregisters both; with THIRD_PORT, registers `worker` with a TTL check on it
and drives the check with ttl_pass/ttl_warn/ttl_fail. Prints one line per step and exits 0, or
raises.
"""
import sys
import threading
import time

import consul

host, port, service_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# mini keys an instance by HOST:PORT within its service: a second ID needs its own port.
second_port = int(sys.argv[4])
third_port = int(sys.argv[5]) if len(sys.argv) > 5 else None
c = consul.Consul(host=host, port=port)

assert c.agent.self()["Config"]["Datacenter"] == "dc1"
print("agent.self ok")

ok = c.agent.service.register(
    "web",
    service_id="web1",
    address="127.0.0.1",
    port=service_port,
    tags=["v1"],
    check=consul.Check.tcp("127.0.0.1", service_port, "1s"),
)
assert ok, "register answered false"
print("registered web1")

deadline = time.time() + 20
while True:
    index, nodes = c.health.service("web", passing=True)
    if any(n["Service"]["ID"] == "web1" for n in nodes):
        break
    assert time.time() < deadline, "web1 never passing: %r" % nodes
    time.sleep(0.05)
assert int(index) > 0, "index 0"
node = nodes[0]
assert node["Service"]["Port"] == service_port
assert node["Service"]["Tags"] == ["v1"]
assert all(ch["Status"] == "passing" for ch in node["Checks"]), node["Checks"]
print("passing with index", index)

index, services = c.catalog.services()
assert services.get("web") == ["v1"], services
print("catalog.services ok")

result = {}


def block():
    started = time.time()
    result["index"], result["nodes"] = c.health.service("web", index=index, wait="20s")
    result["took"] = time.time() - started


t = threading.Thread(target=block)
t.start()
time.sleep(0.3)
c.agent.service.register("web", service_id="web2", address="127.0.0.1", port=second_port)
t.join(25)
assert not t.is_alive(), "blocking query never returned"
assert result["took"] < 15, "blocking query waited out its wait instead of returning on a change"
assert int(result["index"]) > int(index), (result["index"], index)
assert {n["Service"]["ID"] for n in result["nodes"]} == {"web1", "web2"}, result["nodes"]
print("blocking query returned on the change after %.2fs" % result["took"])

assert c.agent.service.maintenance("web1", "true")
index, nodes = c.health.service("web", passing=True)
assert [n["Service"]["ID"] for n in nodes] == ["web2"], nodes
# What Fabio and Traefik watch: every check, the maintenance one critical.
index, checks = c.health.state("critical")
assert [ch["CheckID"] for ch in checks] == ["_service_maintenance:web1"], checks
assert c.agent.service.maintenance("web1", "false")
print("maintenance ok")

index, checks = c.health.state("any")
assert {ch["ServiceID"] for ch in checks} == {"web1", "web2"}, checks
print("health.state ok")

# mini keeps no KV: a key is absent (with an index), and a blocking read waits out its wait.
index, value = c.kv.get("fabio/config")
assert value is None and int(index) == 1, (index, value)
started = time.time()
again, value = c.kv.get("fabio/config", index=index, wait="300ms")
assert value is None and again == index, (again, value)
assert time.time() - started >= 0.25, "a blocking KV read answered at once"
print("kv.get ok")

assert c.agent.service.deregister("web1")
assert c.agent.service.deregister("web2")
index, nodes = c.health.service("web")
assert nodes == [], nodes
print("deregistered")

if third_port is not None:
    assert c.agent.service.register(
        "worker", service_id="worker1", address="127.0.0.1", port=third_port,
        check=consul.Check.ttl("10s"),
    )
    # A TTL check starts critical, as Consul's: not passing until the first ttl_pass.
    index, nodes = c.health.service("worker", passing=True)
    assert nodes == [], nodes
    assert c.agent.check.ttl_pass("service:worker1")
    index, nodes = c.health.service("worker", passing=True)
    assert [n["Service"]["ID"] for n in nodes] == ["worker1"], nodes
    assert c.agent.check.ttl_warn("service:worker1")
    index, nodes = c.health.service("worker")
    assert [ch["Status"] for ch in nodes[0]["Checks"]] == ["warning"], nodes
    assert c.agent.check.ttl_fail("service:worker1")
    index, nodes = c.health.service("worker", passing=True)
    assert nodes == [], nodes
    index, nodes = c.health.service("worker")
    assert [ch["Status"] for ch in nodes[0]["Checks"]] == ["critical"], nodes
    assert c.agent.service.deregister("worker1")
    print("ttl check ok")
