"""TC-CLIP: Temporally Contextualized CLIP for video action recognition."""

from tc_clip.model import TCCLIP, TCCLIPConfig

__all__ = ["TCCLIP", "TCCLIPConfig"]
__version__ = "0.1.0"
