"""Contract test suites that every plugin, built-in or third-party, runs against itself.

Field backends: ``cclgs_core.testing.backends.FieldBackendContract``.
"""
