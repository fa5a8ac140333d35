"""The benchmark apps as Sampan web functions (the same objects plain uvicorn serves)."""

import modal
from fastapi_hello import app as fastapi_asgi
from raw_hello import app as raw_asgi

app = modal.App("bench")


@app.function()
@modal.concurrent(max_inputs=1000)
@modal.asgi_app()
def raw():
    return raw_asgi


@app.function()
@modal.concurrent(max_inputs=1000)
@modal.asgi_app()
def fastapi():
    return fastapi_asgi
