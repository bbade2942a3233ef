"""Tests of dualmd.text2image (a package, so that its conftest and module names do not shadow the top-level ones)."""
