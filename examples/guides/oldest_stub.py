from pydantic import BaseModel

import modal

stub = modal.Stub()


@stub.webhook
def f():
    return "Hello world!"


@stub.webhook
def square(x: int):
    return {"square": x**2}


class Item(BaseModel):
    x: int = 123


@stub.webhook(method="POST")
def square_post(item: Item):
    return {"square": item.x**2}


@stub.webhook(keep_warm=True)
def warm():
    return {"hello": "world"}
