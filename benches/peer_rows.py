"""The rows and sections of Z2 (zarr and 1 MiB puts on a folder) and G1
(Garage against obstore, zarr's ObjectStore and icechunk): the peers of
issue 27, kept apart from suite.py and report.py, which import them."""

from __future__ import annotations

from typing import Any

from rows import MIB, Row, mib, rate, seconds

KIB = 1024
PEER_NAMES = {"zarr": None, "icechunk": "icechunk"}


def size_name(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def zarr_rows(
    tag: str, place: str, zarr_peer: str, z: dict[str, Any], chunk_bytes: int, targets: dict
) -> list[Row]:
    """Write and read rows of one zarr case against both peers."""
    chunks, total = z["chunks"], z["chunks"] * chunk_bytes
    rows = []
    for direction in ("write", "read"):
        ours = z["anthill"][f"{direction}_s"]
        figure = f"{rate(total / ours / MIB, 'MiB')} ({seconds(ours)})"
        if direction == "read":
            per_chunk = z["anthill"]["bytes_read"] / chunks / KIB
            figure += f"; {per_chunk:,.0f} KiB read per chunk"
        for peer, label in (("zarr", zarr_peer), ("icechunk", "icechunk")):
            theirs = z[peer][f"{direction}_s"]
            reference = f"{label} {rate(total / theirs / MIB, 'MiB')} ({seconds(theirs)})"
            if direction == "read":
                reference += f"; {z[peer]['bytes_read'] / chunks / KIB:,.0f} KiB per chunk"
            ratio = theirs / ours
            bound = targets[peer]
            rows.append(
                Row(
                    f"{tag} zarr: {direction} of {chunks:,} chunks of {size_name(chunk_bytes)}, "
                    f"{place}{', fresh process' if direction == 'read' else ''}, vs {label}",
                    figure,
                    reference,
                    ratio,
                    f"≥ {bound:g}",
                    ratio >= bound,
                )
            )
    return rows


def loop_row(tag: str, place: str, peer: str, puts: int, ours: float, theirs: float) -> Row:
    ratio = theirs / ours
    return Row(
        f"{tag} sync loop of {puts} puts of 1 MiB, {place} (write-back included)",
        f"{rate(puts / ours, 'puts')} ({seconds(ours)})",
        f"{peer} {rate(puts / theirs, 'puts')} ({seconds(theirs)})",
        ratio,
        "≥ 0.8",
        ratio >= 0.8,
    )


def z2_rows(r: dict[str, Any]) -> list[Row]:
    z = {"chunks": r["chunks"], **{side: r[side] for side in ("anthill", "zarr", "icechunk")}}
    return [
        *zarr_rows(
            "Z2", "local folder", "zarr LocalStore", z, r["chunk_bytes"], {"zarr": 1, "icechunk": 1}
        ),
        loop_row(
            "Z2",
            "local folder",
            "obstore LocalStore",
            r["puts"],
            r["loop_anthill_s"],
            r["loop_obstore_s"],
        ),
    ]


def g1_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    for key, value in r.items():
        if not key.startswith("get_"):
            continue
        size = int(key.removeprefix("get_"))
        ours, theirs = value["anthill_s"], value["obstore_s"]
        ratio = theirs / ours
        rows.append(
            Row(
                f"G1 Garage (3 nodes): {r['gets']} random gets of {size_name(size)} items, "
                "fresh handle",
                f"{rate(r['gets'] / ours, 'gets')} ({seconds(ours)})",
                f"obstore S3Store {rate(r['gets'] / theirs, 'gets')} ({seconds(theirs)})",
                ratio,
                "≥ 0.8",
                ratio >= 0.8,
            )
        )
    loop = r["loop"]
    rows.append(
        loop_row(
            "G1",
            "Garage (3 nodes)",
            "obstore S3Store",
            r["puts"],
            loop["anthill_s"],
            loop["obstore_s"],
        )
    )
    for key, z in r.items():
        if key.startswith("zarr_"):
            rows += zarr_rows(
                "G1",
                "Garage (3 nodes)",
                "zarr ObjectStore(obstore)",
                z,
                int(key.removeprefix("zarr_")),
                {"zarr": 0.8, "icechunk": 1},
            )
    return rows


def z2_section(r: dict[str, Any]) -> list[str]:
    return [
        "### Z2 zarr with 1 MiB chunks and 1 MiB puts, local folder (benches/python/z2_zarr_folder.py)",
        "",
        (
            f"A 1-D float64 array of {r['chunks']} chunks of {size_name(r['chunk_bytes'])} "
            f"({mib(r['array_bytes'])}, uncompressed) of random numbers (new in each round,"
            " and incompressible: see G1) is written whole by one `array[:] = data`"
        ),
        "(anthill's `close`, which writes its pads back, and icechunk's commit included),",
        "then read whole by a fresh process (`zarr_sides.py`: from opening the store to the",
        "end of `array[:]`, data checked), through `AnthillStore` (4 MiB pads), zarr's",
        "`LocalStore` and icechunk's local-filesystem repository, each in a fresh folder.",
        "The bytes read are the reading process's `rchar` (all it read from files).",
        f"The loop: {r['puts']} `store_item`s of 1 MiB then `close`, against `obstore.put`",
        "into a `LocalStore`. Median of 3 rounds, the sides' order rotating.",
        "",
        *[
            f"- {side}: write {seconds(r[side]['write_s'])}, read {seconds(r[side]['read_s'])}, "
            f"{r[side]['bytes_read'] / r['chunks'] / KIB:,.0f} KiB read per chunk"
            for side in ("anthill", "zarr", "icechunk")
        ],
        "",
    ]


def g1_section(r: dict[str, Any]) -> list[str]:
    out = [
        "### G1 Garage against obstore, zarr's ObjectStore and icechunk (benches/python/g1_garage_peers.py)",
        "",
        "On the 3-node Garage cluster of scripts/garage.sh, each side under a fresh prefix:",
        f"random gets ({r['gets']} a size, one at a time, each checked) through a freshly",
        "opened anthill handle (default options) or `S3Store`, after a warm-up get; a sync",
        f"loop of {r['puts']} 1 MiB puts (anthill's `close` included); zarr arrays written",
        "whole and read whole by a fresh process as in Z2, against zarr's `ObjectStore`",
        "over obstore's `S3Store` and icechunk's S3 repository; the bytes read per chunk",
        "are what Garage's nodes read from their disks meanwhile (`block_bytes_read`;",
        "objects under 3 KiB live in Garage's metadata and are not counted). The 256 MiB",
        "put is P7's row. Median of 3 rounds.",
        "",
        "The arrays hold random numbers, new in each round and side. Garage keeps one copy",
        "per content and compresses its blocks (zstd): an array of consecutive numbers,",
        "written without a zarr codec, shrank 8 times on Garage's disks for the peers'",
        "plaintext chunks (130 KiB read per 1 MiB chunk) and not at all for anthill's",
        "sealed pads, so those rows measured Garage's compressor. Sealed data does not",
        "compress: with anthill, compress in zarr (its codecs) before the store.",
        "",
    ]
    for key, z in r.items():
        if key.startswith("zarr_"):
            chunk = int(key.removeprefix("zarr_"))
            out += [
                f"- zarr, {z['chunks']} chunks of {size_name(chunk)}, {side}: write "
                f"{seconds(z[side]['write_s'])}, read {seconds(z[side]['read_s'])}, "
                f"{z[side]['bytes_read'] / z['chunks'] / KIB:,.0f} KiB read per chunk"
                for side in ("anthill", "zarr", "icechunk")
            ]
    return out + [""]
