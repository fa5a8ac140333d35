import modal

image = modal.Image.debian_slim().pip_install("fastapi[standard]")
app = modal.App(name="has-simple-web-endpoint", image=image)


@app.function()
@modal.web_endpoint()
def f():
    return "Hello world!"


@app.function()
@modal.web_endpoint()
def square(x: int):
    return {"square": x**2}
