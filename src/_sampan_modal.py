"""`import modal` in plain Python (`python script.py` with `with app.run():`) where the real `modal`
package is not installed: a finder placed last on `sys.meta_path` (by `sampan_modal.pth` at start-up)
that answers only when nothing else found `modal`, and then hands over to sampan.modal_alias. Kept
tiny: it runs in every interpreter of the environment and imports nothing until `modal` is asked for."""

import sys


class _Fallback:
    def find_spec(self, fullname, path, target=None):  # noqa: ANN001, ANN201 - importing typing costs 15 ms here
        if fullname != "modal" and not fullname.startswith("modal."):
            return None
        from sampan import modal_alias

        return modal_alias._FINDER.find_spec(fullname, path, target)


def install():  # noqa: ANN201
    if not any(isinstance(f, _Fallback) for f in sys.meta_path):
        sys.meta_path.append(_Fallback())
