"""The configuration of an Xception network: every weight-free choice, in one frozen dataclass, checked once."""
import dataclasses
import math

from ..checks import check_int, check_number, check_padding

PAPER_CHANNELS = {"conv1": 32, "conv2": 64, "block2": 128, "block3": 256, "block4": 728,
                  "block13": 1024, "block14_1": 1536, "block14_2": 2048}
"""Channel counts of Fig. 5; ``width`` multiplies each of them. The middle flow keeps block4's 728."""

@dataclasses.dataclass(frozen=True)
class XceptionConfig:
    """Every weight-free choice of an Xception network, checked once; the defaults are the paper's network.

    ``Xception(**options)`` builds ``XceptionConfig(**options)`` and reads nothing else; ``model.config`` is it,
    and ``dataclasses.asdict(model.config)`` is what a checkpoint needs to know of the architecture.
    """

    num_classes: int = 1000
    in_channels: int = 3
    middle_blocks: int = 8
    width: float = 1.0
    residual: bool = True
    intermediate_activation: str | None = None
    groups: int | None = None
    dropout: float = 0.5
    include_top: bool = True
    pooling: str | None = "avg"
    stem_stride: int = 2
    stem_padding: object = "valid"
    exit_stride: int = 2
    bn_momentum: float = 0.01

    def __post_init__(self):
        for name, minimum in (("num_classes", 1), ("in_channels", 1), ("middle_blocks", 0), ("stem_stride", 1),
                              ("exit_stride", 1)):
            check_int(getattr(self, name), f"Xception: {name}", minimum)
        check_number(self.width, "Xception: width", 0, math.inf, "()")
        check_number(self.dropout, "Xception: dropout", 0, 1, "[)")
        check_number(self.bn_momentum, "Xception: bn_momentum", 0, 1)
        check_padding(self.stem_padding, "Xception: stem_padding")
        if self.pooling not in (None, "avg", "max"):  # the global pooling before the classifier
            raise ValueError(f"Xception: pooling must be 'avg', 'max' or None, got {self.pooling!r}")
        if self.include_top and self.pooling is None:
            raise ValueError("Xception: the classifier (include_top=True) needs pooling='avg' or 'max'")

    def channels(self) -> dict[str, int]:
        """The channel counts of Fig. 5 times ``width`` (rounded, at least 1)."""
        return {name: max(1, round(n * self.width)) for name, n in PAPER_CHANNELS.items()}
