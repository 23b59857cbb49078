"""roomy_heap: inside the block a process started with Dask's allocator settings reuses its heap for temporaries
instead of mapping and faulting in fresh pages for each; after it, the environment's settings hold again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from preflight._util import heap

SRC = str(Path(heap.__file__).resolve().parents[2])

CHURN = """
import resource
import numpy as np
from preflight._util.heap import roomy_heap

def faults(block):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

def churn():  # 200 temporaries of 1 MiB, each written in full: a loss's intermediates, in miniature
    for _ in range(200):
        np.ones(1 << 17).sum()

def inside():
    with roomy_heap():
        churn()

print(faults(churn), faults(inside), faults(churn))
"""

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)


BATCHES = """
import resource
import numpy as np
from preflight._util.heap import settle_heap

def faults(block):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

def churn():  # 50 batches of five 4 MiB temporaries, freed together: a batched check's intermediates
    for _ in range(50):
        arrays = [np.ones(1 << 19) for _ in range(5)]
        del arrays

print(faults(churn), faults(settle_heap), faults(churn))
"""


def _page_faults(environment: dict[str, str], script: str = CHURN) -> list[int]:
    env = {k: v for k, v in os.environ.items() if k not in heap.ALLOCATOR_VARIABLES}
    env.update(environment, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return [int(x) for x in out.stdout.split()]


@glibc_only
def test_settling_the_heap_stops_batches_of_temporaries_from_being_trimmed_and_faulted_in_again() -> None:
    before, settling, after = _page_faults({}, BATCHES)
    # Before: glibc's trim threshold (twice the largest block freed: 8 MiB) is below the 20 MiB freed at the top of
    # the heap after each batch, so every batch faults pages in again (measured: about 2,000 of its 5,120, over
    # 100,000 in all; at least one array's 1,024 each is asked). After: the limits are 30 and 60 MiB and the heap
    # keeps its pages (a few thousand faults in all: the first batch's).
    assert before > 50 * 1024
    assert settling < 100  # the 30 MiB block is mapped and freed, never touched
    assert after * 10 < before


def test_settling_leaves_an_allocator_the_environment_configures_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setattr(heap, "_settled", [])

    def untouchable() -> None:
        raise AssertionError("the allocator was looked at although the environment configures it")

    monkeypatch.setattr(heap, "_glibc", untouchable)
    heap.settle_heap()
    assert heap._settled == []


@glibc_only
def test_with_dasks_trim_threshold_temporaries_reuse_the_heap_inside_the_block_only() -> None:
    before, inside, after = _page_faults({"MALLOC_TRIM_THRESHOLD_": "65536"})  # what Dask's nanny sets
    # Outside, each 1 MiB temporary is a fresh mapping: 256 pages faulted in, 200 times (51,200). Inside, the heap
    # grows once and is reused: a few hundred faults. A factor of 10 leaves room for the interpreter's own.
    assert before > 200 * 256 * 0.9
    assert inside * 10 < before
    assert after > 200 * 256 * 0.9  # the environment's settings are back after the block


def test_an_allocator_the_environment_does_not_configure_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in heap.ALLOCATOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def untouchable() -> None:
        raise AssertionError("mallopt looked up although the environment sets no allocator variable")

    monkeypatch.setattr(heap, "_glibc", untouchable)
    with heap.roomy_heap():
        assert sum(range(4)) == 6


@glibc_only
def test_nested_blocks_restore_once_at_the_outermost(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int]] = []

    class FakeLibc:
        def mallopt(self, parameter: int, value: int) -> int:
            calls.append(("mallopt", parameter))
            return 1

        def malloc_trim(self, pad: int) -> int:
            calls.append(("trim", pad))
            return 1

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setattr(heap, "_glibc", FakeLibc)
    with heap.roomy_heap(), heap.roomy_heap():
        assert len(calls) == 2  # set once, by the outer block
    assert [c[0] for c in calls] == ["mallopt", "mallopt", "mallopt", "mallopt", "trim"]
