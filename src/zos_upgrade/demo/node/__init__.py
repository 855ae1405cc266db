"""The sample node's programs, shipped verbatim inside the demo's releases (never imported by the package)."""
