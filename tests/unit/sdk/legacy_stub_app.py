"""A Modal 0.x-style script: `modal.Stub` and its bare and called decorators."""

import sampan as modal

stub = modal.Stub("old")
image = modal.Image.debian_slim()


@stub.function
def plain() -> int:
    return 1


@stub.webhook
def hook() -> str:
    return "x"


@stub.webhook(method="POST", image=image, keep_warm=True)
def hook2() -> str:
    return "y"


@stub.asgi
def asgi() -> None: ...


@stub.wsgi(image=image)
def wsgi() -> None: ...
