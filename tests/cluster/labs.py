"""A lab for one test module: skipped where namespaces (or an engine) are missing, always torn down."""

from __future__ import annotations

import shutil

import pytest

from tests.cluster import netns


def module_lab(request, tag: str, *, needs: str | None = None, why: str | None = None) -> netns.Lab:
    """A new :class:`netns.Lab` named ``tag`` (an earlier run's leftovers removed first), destroyed
    when the requesting fixture's scope ends; the test is skipped when namespaces cannot be made,
    when the program ``needs`` is not installed, or for ``why`` (a reason found by the caller)."""
    reason = netns.available() or why
    if reason:
        pytest.skip(reason)
    if needs is not None and shutil.which(needs) is None:
        pytest.skip(f"{needs} is not installed")
    netns.leftovers(tag)
    lab = netns.Lab(tag)
    request.addfinalizer(lab.destroy)
    return lab
