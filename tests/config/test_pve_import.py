"""PVE's HA config mapped onto pvha's (``pvha.config.pve_import``): 1:1 options, what is
taken along, conflicts refused before anything is written, the merge a half-done import
needs, and the manager's checks applied to the result."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvha.config import ops, pve_import
from pvha.config.checks import ApiFacts, Cluster
from pvha.config.store import Store
from pvha.errors import ConfigError, UsageError
from pvha.ports import PveHaResource, PveHaSection

NODES = ("node1", "node2", "node3")
CLUSTER = Cluster({}, ApiFacts("node1", True, NODES, frozenset(NODES), {}))
GROUP = PveHaSection("group", "prefer1", (("nodes", "node1:2,node2"), ("nofailback", "1"),
                                          ("comment", "web tier")))
NODE_RULE = PveHaSection("node-affinity", "on-2-3", (
    ("nodes", "node2,node3"), ("resources", "vm:101,vm:103"), ("strict", "1")))
APART = PveHaSection("resource-affinity", "apart", (
    ("affinity", "negative"), ("resources", "vm:101,vm:103")))
PVE = (PveHaResource("vm:100", "vm", "started", "prefer1", 2, None, None, "web"),
       PveHaResource("vm:101", "vm", None, None, None, 0, False),
       PveHaResource("vm:103", "vm", "stopped"))


def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "cfg")


def files(s: Store) -> dict[str, str]:
    return {n: s.read_text(n) for n in ("resources.cfg", "groups.cfg", "rules.cfg")}


def rows(p: pve_import.Plan) -> dict[tuple[str, str], tuple[str, str]]:
    return {(i.kind, i.id): (i.pvha, i.pve) for i in p.items}


def test_everything_is_carried_over_1_to_1(tmp_path: Path) -> None:
    s = store(tmp_path)
    p = pve_import.plan(s.load(), PVE, [GROUP], [NODE_RULE, APART])
    assert p.remove_resources == ("vm:100", "vm:101", "vm:103")
    assert p.remove_groups == ("prefer1",)
    assert set(rows(p).values()) == {("add", "remove")}
    assert pve_import.write(s, p, CLUSTER) == []
    assert files(s) == {
        "resources.cfg": "vm: 100\n\tcomment web\n\tgroup prefer1\n\tmax_restart 2\n"
                         "\tstate started\n\nvm: 101\n\tfailback 0\n\tmax_relocate 0\n\n"
                         "vm: 103\n\tstate stopped\n\n",
        "groups.cfg": "group: prefer1\n\tcomment web tier\n\tnodes node1:2,node2\n"
                      "\tnofailback 1\n\n",
        "rules.cfg": "node-affinity: on-2-3\n\tnodes node2,node3\n\tresources vm:101,vm:103\n"
                     "\tstrict 1\n\nresource-affinity: apart\n\taffinity negative\n"
                     "\tresources vm:101,vm:103\n\n"}
    # the same import again changes nothing
    again = pve_import.plan(s.load(), PVE, [GROUP], [NODE_RULE, APART])
    assert not again.writes and set(rows(again).values()) == {("present", "remove")}


def test_a_subset_takes_its_groups_and_its_share_of_node_rules(tmp_path: Path) -> None:
    s = store(tmp_path)
    unused = PveHaSection("group", "spare", (("nodes", "node3"),))
    p = pve_import.plan(s.load(), PVE, [GROUP, unused], [NODE_RULE], ["vm:100", "vm:103"])
    assert rows(p) == {("resource", "vm:100"): ("add", "remove"),
                       ("resource", "vm:103"): ("add", "remove"),
                       ("group", "prefer1"): ("add", "remove"),
                       ("rule", "on-2-3"): ("add", "keep (for vm:101)")}
    pve_import.write(s, p, CLUSTER)
    assert "resources vm:103\n" in s.read_text("rules.cfg")
    # a sid alone takes no group it does not name; PVE keeps a group another uses
    one = pve_import.plan(Store(tmp_path / "o1").load(), PVE, [GROUP, unused], [], ["vm:101"])
    assert rows(one) == {("resource", "vm:101"): ("add", "remove")}
    sharing = (*PVE, PveHaResource("vm:104", "vm", group="prefer1"))
    shared = pve_import.plan(Store(tmp_path / "o2").load(), sharing, [GROUP], [], ["vm:100"])
    assert rows(shared)[("group", "prefer1")] == ("add", "keep (used by vm:104)")
    assert shared.remove_groups == ()
    # with no sid, every group, an unused one too
    every = pve_import.plan(Store(tmp_path / "o3").load(), PVE[1:], [GROUP, unused], [])
    assert every.remove_groups == ("prefer1", "spare")


def test_a_resource_affinity_rule_moves_whole_or_not_at_all(tmp_path: Path) -> None:
    s = store(tmp_path)
    with pytest.raises(ConfigError, match="PVE's HA rule 'apart' ties vm:101 to vm:103, "
                                          "which stay with PVE's HA: import them together"):
        pve_import.plan(s.load(), PVE, [GROUP], [APART], ["vm:101"])
    assert files(s) == {"resources.cfg": "", "groups.cfg": "", "rules.cfg": ""}


def test_what_pvha_has_differently_is_refused(tmp_path: Path) -> None:
    s = store(tmp_path)
    ops.add_resource(s, "vm:101", {"max_relocate": "3"})
    with pytest.raises(ConfigError, match="resource vm:101 is already in pvha's config with "
                                          "other settings"):
        pve_import.plan(s.load(), PVE, [GROUP], [])
    ops.remove_resource(s, "vm:101")
    ops.add_group(s, "prefer1", {"nodes": "node1"})
    with pytest.raises(ConfigError, match="group 'prefer1' is already in pvha's config"):
        pve_import.plan(s.load(), PVE, [GROUP], [])


def test_pve_entries_pvha_cannot_carry_are_refused(tmp_path: Path) -> None:
    snap = store(tmp_path).load()
    odd = PveHaSection("node-affinity", "odd", (("nodes", "node1"), ("resources", "vm:100"),
                                                ("weight", "3")))
    with pytest.raises(ConfigError, match="PVE's HA rule 'odd': cannot import 'weight': "
                                          "unexpected property 'weight'"):
        pve_import.plan(snap, PVE, [GROUP], [odd])
    future = PveHaSection("node-spread", "future", (("resources", "vm:100"),))
    with pytest.raises(ConfigError, match="of type 'node-spread', which pvha does not know"):
        pve_import.plan(snap, PVE, [GROUP], [future])
    with pytest.raises(ConfigError, match="names group 'prefer1', which PVE's HA config "
                                          "does not have"):
        pve_import.plan(snap, PVE, [], [])
    with pytest.raises(UsageError, match="vm:999 is not managed by PVE's own HA"):
        pve_import.plan(snap, PVE, [GROUP], [], ["vm:999"])


def test_a_disable_key_disables_whatever_its_value(tmp_path: Path) -> None:
    s = store(tmp_path)
    off = PveHaSection("node-affinity", "off", (("disable", "0"), ("nodes", "node1"),
                                                ("resources", "vm:101")))
    pve_import.write(s, pve_import.plan(s.load(), PVE[1:2], [], [off]), CLUSTER)
    assert s.read_text("rules.cfg") == (
        "node-affinity: off\n\tdisable\n\tnodes node1\n\tresources vm:101\n\n")


def test_a_half_done_import_is_merged_not_refused(tmp_path: Path) -> None:
    s = store(tmp_path)
    pve_import.write(s, pve_import.plan(s.load(), PVE, [GROUP], [NODE_RULE, APART]), CLUSTER)
    written = files(s)
    # PVE removed vm:100 and vm:103, purging vm:103 from its rules; vm:101 stayed
    purged = [PveHaSection(r.type, r.id, tuple((k, "vm:101" if k == "resources" else v)
                                                for k, v in r.options))
              for r in (NODE_RULE, APART)]
    p = pve_import.plan(s.load(), PVE[1:2], [], purged)
    assert rows(p) == {("resource", "vm:101"): ("present", "remove"),
                       ("rule", "on-2-3"): ("present", "remove"),
                       ("rule", "apart"): ("present", "remove")}
    assert not p.writes
    pve_import.write(s, p, CLUSTER)
    assert files(s) == written


def test_a_node_rule_taken_in_two_imports_is_merged(tmp_path: Path) -> None:
    s = store(tmp_path)
    pve_import.write(s, pve_import.plan(s.load(), PVE, [GROUP], [NODE_RULE], ["vm:103"]),
                     CLUSTER)
    rest = PveHaSection(NODE_RULE.type, NODE_RULE.id, (
        ("nodes", "node2,node3"), ("resources", "vm:101"), ("strict", "1")))
    p = pve_import.plan(s.load(), PVE[1:2], [], [rest])
    assert rows(p)[("rule", "on-2-3")] == ("update", "remove")
    pve_import.write(s, p, CLUSTER)
    assert "\tresources vm:101,vm:103\n" in s.read_text("rules.cfg")
    stricter = PveHaSection(NODE_RULE.type, NODE_RULE.id, (("nodes", "node2"),
                                                           ("resources", "vm:101")))
    with pytest.raises(ConfigError, match="rule 'on-2-3' is already in pvha's config"):
        pve_import.plan(s.load(), PVE[1:2], [], [stricter])


def test_the_managers_checks_refuse_and_nothing_is_written(tmp_path: Path) -> None:
    s = store(tmp_path)
    ops.add_resource(s, "vm:200", {})
    before = files(s)
    twice = PveHaSection("node-affinity", "twice", (("nodes", "node1"),
                                                    ("resources", "vm:101")))
    p = pve_import.plan(s.load(), PVE[1:2], [], [NODE_RULE, twice])
    with pytest.raises(ConfigError, match="cannot import from PVE's HA: .*already used in "
                                          "another node affinity rule"):
        pve_import.write(s, p, CLUSTER)
    with pytest.raises(ConfigError, match="cannot use non-existent node"):
        nowhere = PveHaSection("node-affinity", "nowhere", (("nodes", "node9"),
                                                            ("resources", "vm:101")))
        pve_import.check(s, pve_import.plan(s.load(), PVE[1:2], [], [nowhere]), CLUSTER)
    assert files(s) == before


def test_a_group_pvha_has_with_its_nodes_in_another_order_is_the_same(tmp_path: Path) -> None:
    # PVE's API lists a group's nodes in hash order; the order means nothing
    s = store(tmp_path)
    ops.add_group(s, "prefer1", {"nodes": "node2,node1:2", "nofailback": "1",
                                 "comment": "web tier"})
    found = rows(pve_import.plan(s.load(), PVE, [GROUP], []))
    assert found[("group", "prefer1")][0] == pve_import.PRESENT
    ops.set_group(s, "prefer1", {"nodes": "node2,node1:3"})  # another priority is not
    with pytest.raises(ConfigError, match="group 'prefer1' is already in pvha's config"):
        pve_import.plan(s.load(), PVE, [GROUP], [])
