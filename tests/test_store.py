"""The sparse chunk store behaves exactly like the numpy array it replaces."""

from __future__ import annotations

import itertools
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


@pytest.mark.parametrize("seed", range(20))
def test_dump_pieces_keep_their_bytes_after_later_writes(seed):
    """A snapshot's buffers (what a dump keeps) never change: copy-on-write, even for a
    chunk written in place before the snapshot."""
    from labkit.layers import Pieces

    rng = random.Random(seed)
    base, ref = _bases()[seed % 5]
    store = ChunkStore(SIZE, base)
    kept: list[tuple[Pieces, bytes, Pieces, bytes]] = []
    for _ in range(60):
        off = rng.randrange(SIZE)
        n = rng.randrange(SIZE - off + 1)
        if rng.random() < 0.6:
            data = bytes(rng.randrange(256) for _ in range(min(n, 64))) * (n // 64 + 1)
            store.write(off, data[:n])
            ref[off:off + n] = np.frombuffer(data[:n], np.uint8)
        else:
            byte = rng.choice([0, 7])
            store.fill(off, n, byte)
            ref[off:off + n] = byte
        if rng.random() < 0.3:
            snap = store.snapshot()
            keep = np.array([rng.random() < 0.5 for _ in range(-(-SIZE // 512))])
            kept_bytes = b"".join(store.kept_pieces(keep, 512))
            kept.append((Pieces.lazy(SIZE, snap.pieces), ref.tobytes(),
                         Pieces(snap.kept_pieces(keep, 512)), kept_bytes))
    for whole, whole_bytes, part, part_bytes in kept:
        assert whole.tobytes() == whole_bytes
        assert part.tobytes() == part_bytes
        a, b = rng.randrange(SIZE), rng.randrange(SIZE)
        lo, hi = min(a, b), max(a, b)
        assert whole.read(lo, hi - lo) == whole_bytes[lo:hi]


def test_layers_from_pieces_and_from_bytes_are_the_same_layer():
    from labkit.layers import Layer, Pieces

    rng = np.random.default_rng(5)
    data = rng.integers(0, 4, 8 * 512, dtype=np.uint8).tobytes()
    alloc = rng.integers(0, 2, 8).astype(bool)
    cuts = [0, 1, 511, 700, 2048, 4095, len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(cuts)]
    joined, split = Layer(data, alloc), Layer(pieces, alloc)
    assert joined == split and hash(joined) == hash(split)
    assert split.data == data and split.read(600, 3000) == data[600:3600]
    assert joined.to_json() == split.to_json()
    other = bytearray(data)
    other[3000] ^= 1
    changed = Layer(Pieces.lazy(len(data), lambda o, n: [bytes(other)[o:o + n]]), alloc)
    assert changed != split and split.first_difference(changed) == 3000 // 512
    assert Layer(data, ~alloc) != joined and joined.first_difference(Layer(data, ~alloc)) == \
        int(np.flatnonzero(alloc != ~alloc)[0])


def test_dumps_of_a_large_disk_cost_what_changed():
    """Two dumps of a 1 GiB disk, and an expect, hold the chunks written, not the disk
    (the issue: 5.3 GB for one dump)."""
    import tracemalloc

    import labkit as lk

    lab = lk.build_secondary(size="1G")
    lab.start()
    tracemalloc.start()
    lab.primary_write(0, 4096, 1)
    lab.run()
    first = lab.dump("one")
    lab.primary_write(0, 4096, 2)
    lab.run()
    second = lab.dump("two")
    assert lab.play("expect secondary 0 4K 2").expectation_failures == []
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 << 20
    assert first["secondary"].read(0, 4096) == bytes([1]) * 4096  # kept its bytes
    assert second["secondary"].read(0, 4096) == bytes([2]) * 4096
    assert first["hidden"] == second["hidden"] and first["secondary"] != second["secondary"]
