"""Networks built from tinyxception.nn: the paper's Xception and its knobs."""
from .xception import Xception, XceptionConfig
