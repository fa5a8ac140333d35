"""The first example of Modal's web functions guide, with a default for `x` so that the first URL
answers a plain GET (`curl URL` gives {"square": 4}; `?x=42` gives 1764):
`sampan serve examples/hello.py`. The guide's own text, unchanged, is in examples/guides/."""

import modal

app = modal.App("demo", image=modal.Image.debian_slim().pip_install("fastapi[standard]"))


@app.function()
@modal.fastapi_endpoint()
def square(x: int = 2):
    return {"square": x**2}


@app.function()
@modal.fastapi_endpoint(method="POST")
def echo(item: dict):
    return {"you_sent": item}
