"""Read what an offline W&B run logged, straight from its ``run-*.wandb`` file (wandb has no offline reader)."""

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768  # the file is a LevelDB-style log: 32 kB blocks of records with 7-byte headers
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data, offset, records, pending = path.read_bytes(), 7, [], b""  # 7 bytes: ":W&B", magic, version
    while offset + 7 <= len(data):
        if BLOCK - offset % BLOCK < 7:
            offset += BLOCK - offset % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        chunk, offset = data[offset + 7 : offset + 7 + length], offset + 7 + length
        if kind == 0:
            break
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def history_keys(records) -> set[str]:
    return {item.key or "/".join(item.nested_key) for r in records if r.HasField("history") for item in r.history.item}


def config(records) -> dict[str, str]:
    return {u.key: u.value_json for r in records if r.HasField("config") for u in r.config.update}
