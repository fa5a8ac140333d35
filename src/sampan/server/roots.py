"""A container's working directory on the process runtime, where containers share the host's filesystem:
the code bundle, merged with files baked into the image, with a link at each Volume's mount path,
all re-rooted (`/root/x` is `x`, `/a/b` is `a/b`). Sandboxed containers get real paths instead
(runtime/sandbox.py) and need none of this.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from ..exception import InvalidError
from ..mountpaths import FS_DIR, reroot
from .bundle import Bundle
from .images.builder import BuiltImage


def _copy_rerooted(tree: Path, root: Path) -> None:
    """Copy an absolute-layout tree (`root/x` is `/root/x`, `a/b` is `/a/b`) into a process-runtime
    working directory, where `/root/x` becomes `x` and `/a/b` becomes `a/b` (recipe.reroot)."""
    root.mkdir(parents=True, exist_ok=True)
    for child in tree.iterdir():
        target = root / reroot("/" + child.name)
        if child.is_dir() and not child.is_symlink():
            shutil.copytree(child, target, symlinks=True, dirs_exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(child, target, follow_symlinks=False)


def container_root(home: Path, bundle: Bundle, image: BuiltImage | None,
                   mounts: list[tuple[str, Path]] | None = None) -> Path:
    """The container's working directory: the code bundle, merged with files baked into the image,
    with a link at each volume's (re-rooted) mount path."""
    baked = image is not None and image.has_root and any(image.root.iterdir())
    if not baked and not mounts:
        return bundle.path
    name = f"{bundle.id}-{image.id if image is not None else 'none'}"
    if mounts:
        name += "-" + hashlib.sha256(json.dumps([(p, str(d)) for p, d in mounts]).encode()).hexdigest()[:12]
    root = home / "roots" / name
    if not root.is_dir():
        tmp = root.with_name(root.name + f".{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if baked:
            assert image is not None
            _copy_rerooted(image.root, tmp)
        shutil.copytree(bundle.path, tmp, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(FS_DIR))
        if (bundle.path / FS_DIR).is_dir():
            _copy_rerooted(bundle.path / FS_DIR, tmp)
        for path, directory in mounts or []:
            link = tmp / reroot(path)
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                raise InvalidError(f"Volume mount path {path} collides with a file of the app.")
            link.symlink_to(directory.resolve())
        try:
            os.rename(tmp, root)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return root
