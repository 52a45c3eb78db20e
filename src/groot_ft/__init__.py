"""groot-ft: fine-tune GR00T N1.6-style vision-language-action policies on LeRobot datasets."""

__version__ = "0.1.0"
