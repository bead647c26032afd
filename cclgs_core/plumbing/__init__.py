"""Plumbing: plugin discovery (registry, hook specifications), run configs and the stage cache."""
