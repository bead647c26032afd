"""SAM2: the video tracker (and the automatic two-level mask generator)."""

from cclgs_core import hookimpl
from cclgs_sam2.tracker import Sam2Tracker


@hookimpl
def cclgs_register_tracker(register):
    register("sam2", Sam2Tracker)
