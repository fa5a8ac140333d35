import modal
from fastapi import FastAPI, WebSocket
from fastapi.responses import StreamingResponse

app = modal.App("api-service")


@app.function()
@modal.fastapi_endpoint()
def hello(name: str = "World"):
    return {"message": f"Hello, {name}!"}


class _Model:  # the cheat sheet's `model` is the reader's own; a stand-in that streams words
    def stream(self, prompt):
        yield from prompt.split()


model = _Model()


@app.function()
@modal.fastapi_endpoint()
def stream_generate(prompt: str):
    def generate():
        for token in model.stream(prompt):
            yield f"data: {token}\n\n"

    return StreamingResponse(generate(), media_type="text/event-stream")


web_app = FastAPI()
process = str.upper  # the cheat sheet's `process` is the reader's own


@web_app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket):
    await websocket.accept()
    while True:
        data = await websocket.receive_text()
        result = process(data)
        await websocket.send_text(result)


@app.function()
@modal.asgi_app()
def ws_app():
    return web_app
