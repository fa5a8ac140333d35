"""The first example of Modal's web functions guide, unchanged: `sampan serve examples/hello.py`."""

import modal

app = modal.App("demo", image=modal.Image.debian_slim().pip_install("fastapi[standard]"))


@app.function()
@modal.fastapi_endpoint()
def square(x: int):
    return {"square": x**2}


@app.function()
@modal.fastapi_endpoint(method="POST")
def echo(item: dict):
    return {"you_sent": item}
