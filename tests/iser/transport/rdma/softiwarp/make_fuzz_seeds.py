#!/usr/bin/env python3
"""Writes seed inputs for tests/fuzz/rdma_rx_fuzzer.cc into tests/fuzz/corpus/rdma_rx.

Layout and STags must match the fuzzer: regions at 0x100000000 + 64 + i*320,
STags 0x101 (rw), 0x202 (remote read), 0x303 (local), 0x404 (other PD).
"""
import os
import struct
import sys

BASE = 0x100000000
def region(i): return BASE + 64 + i * 320

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def fpdu(hdr, payload=b"", crc=True):
    body = bytearray(hdr + payload)
    struct.pack_into(">H", body, 0, len(body) - 2)
    while len(body) % 4:
        body.append(0)
    c = crc32c(body) if crc else 0
    return bytes(body) + struct.pack("<I", c)

def write(stag, to, last=True): return struct.pack(">HBBIQ", 0, 0x81 | (0x40 if last else 0), 0x40, stag, to)
def rresp(stag, to, last=True): return struct.pack(">HBBIQ", 0, 0x81 | (0x40 if last else 0), 0x42, stag, to)
def send(msn, mo, last=True, op=3, inv=0):
    return struct.pack(">HBBIIII", 0, 0x01 | (0x40 if last else 0), 0x40 | op, inv, 0, msn, mo)
def rreq(msn, sink_stag, sink_to, size, src_stag, src_to):
    return struct.pack(">HBBIIIIIQIIQ", 0, 0x41, 0x41, 0, 1, msn, 0, sink_stag, sink_to, size,
                       src_stag, src_to)[:20] + struct.pack(">IQIIQ", sink_stag, sink_to, size,
                                                            src_stag, src_to)
def term(layer, etype, code):
    return struct.pack(">HBBIIIII", 0, 0x41, 0x47, 0, 2, 1, 0,
                       layer << 28 | etype << 24 | code << 16)

def seeds():
    yield "send", fpdu(send(1, 0), b"hello world")
    yield "send_two_segments", fpdu(send(1, 0, False), b"A" * 40) + fpdu(send(1, 40), b"B" * 20)
    yield "two_sends", fpdu(send(1, 0), b"x" * 64) + fpdu(send(2, 0, op=5), b"y")
    yield "send_inv", fpdu(send(1, 0, op=4, inv=0x202), b"inv")
    yield "write_ok", fpdu(write(0x101, region(0) + 16), b"W" * 100)
    yield "write_segments", (fpdu(write(0x101, region(0), False), b"1" * 100) +
                             fpdu(write(0x101, region(0) + 100), b"2" * 100))
    yield "write_oob", fpdu(write(0x101, region(0) + 250), b"O" * 20)
    yield "write_ro", fpdu(write(0x202, region(1)), b"R" * 8)
    yield "write_foreign", fpdu(write(0x404, region(3)), b"F" * 8)
    yield "write_zero", fpdu(write(1, 0))
    yield "rreq_ok", fpdu(rreq(1, 0x999, 0x1000, 100, 0x202, region(1)))
    yield "rreq_many", b"".join(fpdu(rreq(m, 1, 2, 8, 0x101, region(0))) for m in range(1, 6))
    yield "rreq_oob", fpdu(rreq(1, 1, 2, 300, 0x202, region(1)))
    yield "rresp_ok", fpdu(rresp(0x101, region(0) + 128), b"r" * 64)
    yield "rresp_split", (fpdu(rresp(0x101, region(0) + 128, False), b"a" * 32) +
                          fpdu(rresp(0x101, region(0) + 160), b"b" * 32))
    yield "terminate", fpdu(term(1, 1, 0))
    yield "mixed", (fpdu(send(1, 0), b"m") + fpdu(write(0x101, region(0) + 200), b"w" * 56) +
                    fpdu(rreq(1, 5, 6, 16, 0x101, region(0))) + fpdu(rresp(0x101, region(0) + 128), b"z" * 64))

def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "../../../../fuzz/corpus/rdma_rx")
    os.makedirs(out, exist_ok=True)
    for name, body in seeds():
        for mode, tag in ((0x00, ""), (0x07, "_chunk7"), (0x10, "_nocrc")):
            data = body if mode != 0x10 else body  # CRC off: field ignored, keep it
            with open(os.path.join(out, name + tag), "wb") as f:
                f.write(bytes([mode]) + data)

if __name__ == "__main__":
    main()
