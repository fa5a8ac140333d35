"""The app of the Ray scenario's across-nodes step (backend_scenario.py): functions pinned to the test
cluster's two nodes by `region=` (node labels a and b), a Volume, a Dict, a Queue and a web_server."""

import os
import subprocess
import sys

import modal

app = modal.App("across")
vol = modal.Volume.from_name("across-vol", create_if_missing=True)
notes = modal.Dict.from_name("across-dict", create_if_missing=True)
jobs = modal.Queue.from_name("across-queue", create_if_missing=True)
NODE = os.environ.get("SAMPAN_RAY_NODE_ID")
DATA = "/data" if os.path.isdir("/data") else "data"  # re-rooted on a node without the sandbox

SERVER = """
import http.server, json, os, time
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.3)
        body = json.dumps({"node": os.environ.get("SAMPAN_RAY_NODE_ID"), "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
"""


@app.function(region="a")
def double(x):
    return {"x": 2 * x, "node": os.environ.get("SAMPAN_RAY_NODE_ID")}


@app.cls(region="a")
class Greeter:
    name: str = modal.parameter()

    @modal.method()
    def greet(self):
        return f"hello {self.name} from {os.environ.get('SAMPAN_RAY_NODE_ID')}"


@app.function(region="b", volumes={"/data": vol})
@modal.fastapi_endpoint()
def writer(text: str = "hi"):
    got = double.remote(21)
    mapped = [m["x"] for m in double.map(range(5))]
    greeting = Greeter(name="ray").greet.remote()
    call = double.spawn(4)
    notes["from_b"] = {"node": NODE, "double": got["x"]}
    jobs.put(text)
    with open(f"{DATA}/note.txt", "w") as fh:
        fh.write(text)
    vol.commit()
    with open(f"{DATA}/private.txt", "w") as fh:  # not committed while this container lives
        fh.write("mine")
    lookup = modal.Function.from_name("across", "double").remote(1)["x"]
    return {"node": NODE, "double": got, "mapped": mapped, "greeting": greeting,
            "spawned": call.get(timeout=60)["x"], "lookup": lookup}


@app.function(region="a", volumes={"/data": vol}, min_containers=1)
@modal.fastapi_endpoint()
def reader():
    before = os.path.exists(f"{DATA}/note.txt")
    vol.reload()
    after = open(f"{DATA}/note.txt").read() if os.path.exists(f"{DATA}/note.txt") else None
    return {"node": NODE, "before": before, "after": after, "private": os.path.exists(f"{DATA}/private.txt"),
            "dict": notes.get("from_b"), "queue": jobs.get(timeout=10)}


@app.function(min_containers=4)
@modal.web_server(8000)
def web():
    subprocess.Popen([sys.executable, "-c", SERVER])
