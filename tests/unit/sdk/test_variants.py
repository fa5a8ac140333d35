"""`with_options/with_concurrency/with_batching` (sdk/variants.py) and how the server applies them
(manifest.apply_variant): pure, no server."""

from __future__ import annotations

import pytest

import sampan as modal
from sampan.manifest import FunctionEntry, apply_variant, merge_variants

app = modal.App("v")


@app.function(cpu=1.0, memory=512, timeout=60)
def f() -> None:
    return None


@app.cls()
class C:
    @modal.method()
    def m(self) -> None:
        return None


def test_variants_are_new_handles_and_chain() -> None:
    g = f.with_options(gpu="A10G").with_options(timeout=5, env={"A": "1"}).with_concurrency(max_inputs=8)
    assert f._variant == {} and g is not f
    assert g._variant == {"resources": {"gpus": [["A10G", 1]]}, "timeout": 5, "env": {"A": "1"}, "max_inputs": 8}
    assert g._call_target().variant == g._variant
    assert C.with_options(memory=1024)().m._call_target().variant == {"resources": {"memory_mib": 1024,
                                                                                    "memory_limit_mib": None}}
    assert modal.Function.from_name("a", "b").with_batching(max_batch_size=4, wait_ms=10)._variant == {
        "batch": {"max_batch_size": 4, "wait_ms": 10}}


@pytest.mark.parametrize(("make", "text"), [
    (lambda: f.with_concurrency(max_inputs=2, target_inputs=3), "cannot be greater than `max_inputs`"),
    (lambda: f.with_concurrency(max_inputs=0), "`max_inputs` must be a positive integer."),
    (lambda: f.with_batching(max_batch_size=0, wait_ms=1), "max_batch_size must be a positive integer."),
    (lambda: f.with_batching(max_batch_size=2, wait_ms=700_000), "wait_ms cannot be greater than"),
    (lambda: f.with_options(timeout=-1), "`timeout` must be a non-negative integer."),
    (lambda: f.with_options(cpu=-1), "Invalid cpu=-1"),
])
def test_modals_rules(make: object, text: str) -> None:
    with pytest.raises(modal.exception.InvalidError, match=text.replace("`", ".").replace("(", ".")):
        make()  # type: ignore[operator]


def test_the_server_applies_a_variant_to_a_copy_of_the_entry() -> None:
    entry = FunctionEntry("f", "function", {}, timeout=60, resources={"cpu": 1.0, "memory_mib": 512},
                          secrets=({"name": "app-secret", "required_keys": []},))
    out = apply_variant(entry, merge_variants({"resources": {"cpu": 2.0}}, {"env": {"K": "v"}, "max_inputs": 3}))
    assert out.resources == {"cpu": 2.0, "memory_mib": 512} and out.max_inputs == 3 and out.timeout == 60
    assert out.secrets == ({"name": "app-secret", "required_keys": []}, {"values": {"K": "v"}})
    assert apply_variant(entry, {"secrets": [{"values": {"X": "1"}}]}).secrets == ({"values": {"X": "1"}},)
    batched = apply_variant(entry, {"batch": {"max_batch_size": 4, "wait_ms": 5}})
    assert batched.max_inputs == 4 and batched.batch == {"max_batch_size": 4, "wait_ms": 5}
    with pytest.raises(ValueError, match="Unknown function options: image"):
        apply_variant(entry, {"image": []})
    with pytest.raises(ValueError, match="malformed"):
        apply_variant(entry, {"secrets": [{"path": "/etc/shadow"}]})
