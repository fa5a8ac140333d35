"""cpu=, memory= and gpu= as backends use them (resources.py): Modal's forms, Ray's options, placement."""

from __future__ import annotations

import pytest

from sampan.exception import InvalidError
from sampan.resources import MIB, GpuChoice, Resources, choose, fits, ray_options

CPU_NODE = {"CPU": 2.0, "memory": 4096 * MIB}
GPU_NODE = {"CPU": 8.0, "memory": 65536 * MIB, "GPU": 2.0, "accelerator_type:H100": 1.0}


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, {"num_cpus": 0.125}),
    ({"cpu": 2}, {"num_cpus": 2.0}),
    ({"cpu": (1, 4), "memory": (512, 1024)}, {"num_cpus": 1.0, "memory": 512 * MIB}),
    ({"gpu": "any"}, {"num_cpus": 0.125, "num_gpus": 1}),
    ({"gpu": "h100:2"}, {"num_cpus": 0.125, "num_gpus": 2, "accelerator_type": "H100"}),
    ({"gpu": "A100-80GB"}, {"num_cpus": 0.125, "num_gpus": 1, "accelerator_type": "A100-80G"}),
], ids=["default", "cpu", "tuples", "any-gpu", "typed-gpus", "renamed-type"])
def test_modal_forms_become_ray_actor_options(kwargs: dict, expected: dict) -> None:
    r = Resources.parse(**kwargs)
    assert ray_options(r, r.gpus[0] if r.gpus else None) == expected
    assert Resources.from_json(r.to_json()) == r


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cpu": 0}, "the request must be a positive number of cores"),
    ({"cpu": (2, 1)}, "the limit must be at least the request"),
    ({"cpu": "two"}, "use a number or a (request, limit) tuple"),
    ({"memory": (1, 2, 3)}, "use a number or a (request, limit) tuple"),
    ({"gpu": "H100:0"}, "the count after ':' must be a positive integer"),
    ({"gpu": 3}, "use a GPU type such as 'A10G'"),
], ids=["zero-cpu", "cpu-limit", "cpu-type", "memory-tuple", "gpu-count", "gpu-type"])
def test_wrong_values_are_refused_with_a_clear_message(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Resources.parse(**kwargs)


def test_fits_checks_totals_and_gpu_types() -> None:
    assert fits({"num_cpus": 2.0}, CPU_NODE) and not fits({"num_cpus": 3.0}, CPU_NODE)
    assert not fits({"num_cpus": 1.0, "memory": 8192 * MIB}, CPU_NODE)
    assert fits({"num_cpus": 1.0, "num_gpus": 2, "accelerator_type": "H100"}, GPU_NODE)
    assert not fits({"num_cpus": 1.0, "num_gpus": 1, "accelerator_type": "A10G"}, GPU_NODE)


def test_a_gpu_ranking_takes_the_first_choice_some_node_can_hold() -> None:
    r = Resources.parse(gpu=["A10G", "H100:2", "any"])
    gpu, options = choose(r, [CPU_NODE, GPU_NODE])
    assert gpu == GpuChoice("H100", 2) and options["accelerator_type"] == "H100"


def test_a_request_no_node_can_hold_fails_at_once_naming_the_largest_node() -> None:
    with pytest.raises(InvalidError, match=r"No node of the Ray cluster can hold a container with cpu=16, "
                                           r"gpu=A10G:1: the largest has cpu=8, memory=65536 MiB, gpu=2 "
                                           r"\(GPU types: H100\)\."):
        choose(Resources.parse(cpu=16, gpu="A10G"), [CPU_NODE, GPU_NODE])
