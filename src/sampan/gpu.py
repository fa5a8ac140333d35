"""`modal.gpu`: the legacy GPU objects (`modal.gpu.A10G()`, `modal.gpu.H100(count=2)`), removed from
Modal in 1.4.0 but still in older scripts. Each stands for the string `gpu=` takes today and warns as
Modal 0.73-1.3 did."""

from __future__ import annotations

from ._deprecation import deprecation_warning


class _GPUConfig:
    type_name = ""

    def __init__(self, count: int = 1) -> None:
        self.count = count

    def __str__(self) -> str:
        return self.type_name + (f":{self.count}" if self.count != 1 else "")

    def __repr__(self) -> str:
        return f"GPU({self.type_name}, count={self.count})"

    def _modal_gpu_string(self) -> str:
        """What `gpu=` gets: the string this object stands for (warns, as Modal did)."""
        deprecation_warning((2025, 2, 7), f"`gpu={type(self).__name__}(...)` is deprecated. Use `gpu=\"{self}\"` "
                                          "instead.")
        return str(self)


class T4(_GPUConfig):
    type_name = "T4"


class L4(_GPUConfig):
    type_name = "L4"


class A10G(_GPUConfig):
    type_name = "A10G"

    def __init__(self, *, count: int = 1) -> None:
        super().__init__(count)


class A100(_GPUConfig):
    def __init__(self, *, count: int = 1, size: str | None = None) -> None:
        if size not in (None, "40GB", "80GB"):
            raise ValueError(f"size='{size}' is invalid. A100s can only have memory values of 40GB or 80GB.")
        super().__init__(count)
        self.type_name = f"A100-{size or '40GB'}"


class H100(_GPUConfig):
    type_name = "H100"

    def __init__(self, *, count: int = 1) -> None:
        super().__init__(count)


class L40S(_GPUConfig):
    type_name = "L40S"

    def __init__(self, *, count: int = 1) -> None:
        super().__init__(count)


class Any(_GPUConfig):
    type_name = "ANY"

    def __init__(self, *, count: int = 1) -> None:
        super().__init__(count)


__all__ = ["A10G", "A100", "Any", "H100", "L4", "L40S", "T4"]
