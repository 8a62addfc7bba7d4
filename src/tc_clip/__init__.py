"""TC-CLIP: Temporally Contextualized CLIP for video action recognition."""

from tc_clip.model import TCCLIP

__all__ = ["TCCLIP"]
__version__ = "0.1.0"
