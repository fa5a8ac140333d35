"""Where the Ray backend puts a container (backends/placement.py): pure decisions over node books."""

from __future__ import annotations

import pytest

from sampan.backends import placement
from sampan.backends.placement import NodeInfo, place
from sampan.resources import Resources, ray_options

A = NodeInfo("a", {"CPU": 1.0, "memory": 8e9}, {"region": "us-east"})
B = NodeInfo("b", {"CPU": 2.0, "memory": 16e9}, {"region": "eu-west", "cloud": "gcp"})
G = NodeInfo("g", {"CPU": 8.0, "memory": 64e9, "GPU": 2.0, "accelerator_type:H100": 1.0, "cloud:aws": 1.0})


def options(cpu: float = 0.125, memory: int | None = None, gpu: str | None = None) -> dict:
    resources = Resources.parse(cpu, memory, gpu)
    return ray_options(resources, resources.gpus[0] if resources.gpus else None)


def books(*placed: tuple[str, dict]) -> dict[str, dict[str, float]]:
    used: dict[str, dict[str, float]] = {}
    for node, opts in placed:
        placement.add(used, node, placement.demand(opts))
    return used


def test_spread_puts_a_pools_containers_on_different_nodes_first() -> None:
    siblings = {"b": 1}
    assert place(options(), [A, B], books(("b", options())), siblings=siblings) == "a"
    # Other pools' containers count after the pool's own: B has three others, A one of this pool.
    used = books(("b", options()), ("b", options()), ("b", options()), ("a", options()))
    assert place(options(), [A, B], used, siblings={"a": 1}) == "b"


def test_spread_breaks_ties_by_container_count_then_cpu_share_then_id() -> None:
    assert place(options(), [A, B], {}) == "b", "0.125 of 2 CPUs is a smaller share than of 1"
    assert place(options(cpu=1.0), [A, NodeInfo("c", {"CPU": 1.0})], {}) == "a"


def test_pack_fills_the_busiest_node_that_still_has_room() -> None:
    used = books(("b", options(cpu=1.0)))
    assert place(options(cpu=0.5), [A, B], used, "pack") == "b"
    assert place(options(cpu=1.0), [A, B], used, "pack") == "b", "B has exactly one CPU left"
    full = books(("b", options(cpu=2.0)))
    assert place(options(cpu=0.5), [A, B], full, "pack") == "a"


def test_no_room_now_is_none_and_the_books_give_back() -> None:
    used = books(("a", options(cpu=1.0)), ("b", options(cpu=2.0)))
    assert place(options(cpu=0.5), [A, B], used) is None
    placement.add(used, "b", placement.demand(options(cpu=2.0)), -1)
    assert place(options(cpu=0.5), [A, B], used) == "b"
    assert used["b"]["CPU"] == 0 and used["b"][placement.COUNT] == 0


def test_memory_and_gpus_must_fit_too() -> None:
    assert place(options(memory=12_000), [A, B], {}) == "b"
    assert place(options(gpu="H100"), [A, B, G], {}) == "g"
    assert place(options(gpu="A100"), [A, B, G], {}) is None, "no node has that type"
    used = books(("g", options(gpu="H100:2")))
    assert place(options(gpu="H100"), [A, B, G], used) is None, "both of G's GPUs are taken"


def test_region_and_cloud_follow_labels_or_custom_resources() -> None:
    assert place(options(), [A, B, G], {}, regions=["us-east"]) == "a"
    assert place(options(), [A, B, G], {}, regions=["us-west", "eu-west"]) == "b"
    assert place(options(), [A, B, G], {}, cloud="aws") == "g", "a custom resource cloud:aws"
    assert place(options(), [A, B, G], {}, cloud="gcp", regions=["eu-west"]) == "b"
    assert place(options(), [A, B, G], {}, cloud="gcp", regions=["us-east"]) is None


def test_avoided_nodes_are_skipped() -> None:
    assert place(options(), [A, B], {}, avoid={"b"}) == "a"
    assert place(options(), [A, B], {}, avoid={"a", "b"}) is None


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown placement policy 'random'"):
        place(options(), [A], {}, "random")


def test_region_and_cloud_travel_in_the_manifest_resources() -> None:
    resources = Resources.parse(1, None, None, ["us-east", "us-west"], "aws")
    again = Resources.from_json(resources.to_json())
    assert again.regions == ("us-east", "us-west") and again.cloud == "aws"
    assert "region=us-east or us-west" in again.describe() and "cloud=aws" in again.describe()
    assert Resources.parse(region="eu-west").regions == ("eu-west",)
    assert "regions" not in Resources.parse().to_json(), "manifests without them are unchanged"
