"""The manifest: what the SDK says of an App (sdk/describe.py) travels as JSON and comes back equal."""

from __future__ import annotations

import json

import sampan as modal
from sampan.manifest import Manifest, compose_env, recipe_hash
from sampan.sdk.describe import build_manifest

app = modal.App("shape", secrets=[modal.Secret.from_dict({"A": "1"})])
image = modal.Image.debian_slim().pip_install("six").env({"E": "x"})


@app.function(image=image, retries=2, schedule=modal.Period(hours=1), env={"B": "2"})
def tick() -> None:
    return None


@app.function(max_containers=3, timeout=10)
@modal.fastapi_endpoint(method="POST", label="hi")
def hello(x: int = 1) -> dict:
    return {"x": x}


@app.cls()
class Model:
    size: int = modal.parameter(default=3)

    @modal.method()
    def predict(self) -> int:
        return self.size


@app.local_entrypoint()
def main(n: int = 2) -> None:
    return None


def test_a_manifest_survives_json() -> None:
    manifest = build_manifest(app, "shape_mod", "app")
    back = Manifest.from_json(json.loads(json.dumps(manifest.to_json())))
    assert back == manifest
    assert [f.tag for f in back.functions] == ["hello"]
    assert {f.tag for f in back.calls} == {"tick", "Model.predict"}
    assert back.entrypoints[0]["name"] == "main"


def test_what_the_server_reads_of_it() -> None:
    manifest = build_manifest(app, "shape_mod", "app")
    hello_entry = manifest.functions[0]
    assert (hello_entry.web["method"], hello_entry.web["label"]) == ("POST", "hi")
    assert (hello_entry.max_containers, hello_entry.timeout) == (3, 10)
    tick_entry = next(f for f in manifest.calls if f.tag == "tick")
    assert tick_entry.retries == {"max_retries": 2, "backoff_coefficient": 2.0, "initial_delay": 1.0,
                                  "max_delay": 60.0}
    assert tick_entry.schedule is not None and recipe_hash(list(tick_entry.image)) == image.recipe_hash()
    # App secret, then the function's env (later ones win); the image's env first.
    assert compose_env(tick_entry, lambda name, keys: {}) == {"E": "x", "A": "1", "B": "2"}
    model = next(f for f in manifest.calls if f.tag == "Model.predict")
    assert model.class_params == ({"name": "size", "type": "int", "required": False, "default": 3},)
