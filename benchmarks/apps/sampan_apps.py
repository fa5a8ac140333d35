"""The benchmark apps as Sampan web functions (the same objects plain uvicorn serves)."""

import modal

app = modal.App("bench")


@app.function()
@modal.concurrent(max_inputs=1000)
@modal.asgi_app()
def raw():
    from raw_hello import app as asgi

    return asgi


@app.function()
@modal.concurrent(max_inputs=1000)
@modal.asgi_app()
def fastapi():
    from fastapi_hello import app as asgi

    return asgi
