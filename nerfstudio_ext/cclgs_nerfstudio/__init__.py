"""The nerfstudio method ``ccl-lgs``: splatfacto plus the CCL-LGS semantic field, trained jointly.

Registered under the entry point group ``nerfstudio.method_configs`` (``cclgs_nerfstudio.config:ccl_lgs``).
Nothing is imported here, so nerfstudio's method discovery stays cheap.
"""
