"""The sparse chunk store behaves exactly like the numpy array it replaces."""

from __future__ import annotations

import random

import numpy as np
import pytest

from labkit.block import CHUNK, BufferBase, ChunkStore, ConstantFill, IndexFill
from labkit.lab import index_fill

SIZE = 5 * CHUNK + 1536  # a short last chunk


def _bases():
    initial = np.random.default_rng(1).integers(0, 256, SIZE, dtype=np.uint8)
    return [
        (None, np.zeros(SIZE, np.uint8)),
        (ConstantFill(0x33), np.full(SIZE, 0x33, np.uint8)),
        (IndexFill(4096), np.frombuffer(index_fill(SIZE, 4096), np.uint8).copy()),
        (IndexFill(512), np.frombuffer(index_fill(SIZE, 512), np.uint8).copy()),
        (BufferBase(initial.tobytes()), initial.copy()),
    ]


@pytest.mark.parametrize("seed", range(40))
def test_random_operations_match_an_array(seed):
    rng = random.Random(seed)
    base, ref0 = _bases()[seed % 5]
    pairs = [(ChunkStore(SIZE, base), ref0)]  # copy-on-write snapshots join the list
    for _ in range(80):
        store, ref = rng.choice(pairs)
        off = rng.randrange(SIZE)
        n = rng.randrange(SIZE - off + 1)
        op = rng.random()
        if op < 0.35:
            data = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 256, n,
                                                                          dtype=np.uint8)
            store.write(off, data if rng.random() < 0.5 else data.tobytes())
            ref[off:off + n] = data
        elif op < 0.6:
            byte = rng.choice([0, 0x80, 0xff])
            store.fill(off, n, byte)
            ref[off:off + n] = byte
        elif op < 0.65:
            store.clear()
            ref[:] = store.base(0, SIZE)
        elif op < 0.75:
            pairs.append((store.copy(), ref.copy()))
        elif op < 0.8:
            store[off] = 0x42
            ref[off] = 0x42
        assert np.array_equal(store.read(off, n), ref[off:off + n])
    for store, ref in pairs:  # every snapshot kept its own bytes
        assert np.array_equal(store.to_array(), ref)
        assert store[SIZE - 1] == ref[SIZE - 1] and np.array_equal(store[3:700], ref[3:700])


def test_index_fill_matches_the_lab_fill_for_any_window():
    fill = IndexFill(4096)
    full = np.frombuffer(index_fill(2 << 20, 4096), np.uint8)
    for off, n in [(0, 1), (4095, 2), (0x70 * 4096 - 7, 100), (12345, 0x70 * 4096 + 9),
                   (0, 2 << 20)]:
        assert np.array_equal(fill(off, n), full[off:off + n])


def test_only_written_chunks_are_held():
    store = ChunkStore(1 << 30, IndexFill(4096))
    store.write(8192, bytes(4096))
    store.fill(1 << 20, 3 * CHUNK, 0xbb)
    assert store.chunks == 4
    store.clear()
    assert store.chunks == 0


def _fresh_layers(lab):
    """The layers with every reuse cache dropped first: computed from scratch."""
    lab.drop_layer_caches()
    return lab.layers()


@pytest.mark.parametrize("seed", range(12))
def test_reused_layer_dumps_equal_fresh_ones_after_every_decision(seed):
    import labkit as lk

    rng = random.Random(seed)
    lab = lk.build_secondary(size="256K", hidden_cluster=rng.choice(["4K", "64K"]),
                             active_cluster=rng.choice(["512", "4K", "64K"]),
                             design=rng.choice(["none", "2.8", "4.0"]), policy=lk.Random(seed))
    lab.start()
    for round_ in range(6):
        for _ in range(rng.randint(1, 3)):
            off = rng.randrange(0, 256 * 1024 // 512) * 512
            n = min(rng.choice([512, 4096, 65536]), 256 * 1024 - off)
            kind = rng.choice(["pwrite", "pzero", "vwrite", "vread"])
            if kind == "vread":
                lab.vm_read(off, n)
            elif kind == "vwrite":
                lab.vm_write(off, n, 0xcc)
            else:
                lab.primary_write(off, n, 0xbb if kind == "pwrite" else 0)
        if round_ == 3:
            lab.checkpoint(wait=False)
        if round_ == 5 and seed % 2:
            lab.failover(wait=False)
        while lab.runnable():
            lab.step()
            cached = lab.layers()
            fresh = _fresh_layers(lab)
            for name, layer in cached.items():
                other = fresh[name]
                assert (layer is None) == (other is None)
                if layer is not None:
                    assert layer == other and np.array_equal(layer.zero, other.zero)
