"""Networks built from tinyxception.nn: the paper's Xception and its knobs."""
from .config import XceptionConfig
from .xception import Xception
