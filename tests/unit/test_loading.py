"""loop.ml.loading.release_memory gives freed heap back to the OS: without it a sweep worker, which trains and
evaluates one model after another, kept every cell's freed pages and two workers outgrew a 24 GiB machine."""

import os

from loop.ml.loading import release_memory


def _rss_mib() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_release_memory_returns_freed_blocks_below_a_live_one():
    before = _rss_mib()
    blocks = [bytearray(2000) for _ in range(100_000)]  # ~200 MiB of malloc'd (not mmap'd) blocks
    pin = bytearray(2000)  # allocated last: glibc's free() can only shrink the heap down to it
    del blocks
    freed = _rss_mib()
    assert freed - before > 150, "the freed blocks should still be resident before release_memory"
    release_memory()
    assert _rss_mib() - before < 50
    assert len(pin) == 2000
