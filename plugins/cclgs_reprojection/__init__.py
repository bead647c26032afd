"""The reprojection tracker: cross-view mask labels from the scene's own geometry."""

from cclgs_core import hookimpl
from cclgs_reprojection.tracker import ReprojectionTracker


@hookimpl
def cclgs_register_tracker(register):
    register("reprojection", ReprojectionTracker)
