"""The ground floor: typed errors and exit codes, safe output files, registries, devices.

Nothing here imports another part of gsdd_cli.
"""
