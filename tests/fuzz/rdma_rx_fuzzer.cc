// libFuzzer target for the software iWARP receive path: arbitrary bytes arrive on an
// established QP (after the MPA handshake) and go through the FPDU state machine, DDP
// placement and RDMAP processing. Invariants checked on every input:
//   - no byte outside the remotely writable region, the posted receive buffers and the
//     outstanding Read's sink changes (canaries around every region, and the regions
//     without remote write access stay as they were);
//   - the process does not crash (ASan/UBSan watch the rest).
//
// Input: byte 0 = mode (low nibble: read chunk size, 0 = all at once; 0x10: CRC off;
// bits 5-6: IRD - 1), then the byte stream. Regions sit at a fixed address so seeds can
// name valid tagged offsets: region i at kBase + 64 + i * 320, 256 bytes each, STags
// 0x101 (rw), 0x202 (remote read only), 0x303 (local only), 0x404 (other PD).
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <memory>

#include "iser/base/logging.h"
#include "iser/transport/rdma/softiwarp/cq.h"
#include "iser/transport/rdma/softiwarp/device.h"
#include "iser/transport/rdma/softiwarp/qp.h"

namespace {

using namespace iser::softiwarp;  // NOLINT
namespace rdma = iser::rdma;

constexpr uintptr_t kBase = 0x100000000;
constexpr size_t kCanary = 64;
constexpr size_t kRegion = 256;
constexpr size_t kStride = kRegion + kCanary;
constexpr size_t kArena = kCanary + 4 * kStride;
constexpr uint8_t kCanaryByte = 0xCA;
constexpr uint8_t kRegionByte = 0x5A;

uint8_t* Arena() {
  static uint8_t* arena = [] {
    void* p = mmap(reinterpret_cast<void*>(kBase), 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    iser::SetLogLevel(iser::LogLevel::kError);
    return static_cast<uint8_t*>(p);
  }();
  return arena;
}

uint8_t* Region(int i) { return Arena() + kCanary + i * kStride; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  uint8_t* arena = Arena();
  std::memset(arena, kCanaryByte, kArena);
  for (int i = 0; i < 4; ++i) std::memset(Region(i), kRegionByte, kRegion);

  SoftDevice dev(nullptr, {});
  SoftPd pd(&dev, 1), other_pd(&dev, 2);
  SoftCq cq(64, nullptr, nullptr);
  const uint32_t all =
      rdma::kAccessLocalWrite | rdma::kAccessRemoteWrite | rdma::kAccessRemoteRead;
  auto rw = *pd.RegisterMemory(Region(0), kRegion, all);
  auto ro = *pd.RegisterMemory(Region(1), kRegion,
                               rdma::kAccessLocalWrite | rdma::kAccessRemoteRead);
  auto local = *pd.RegisterMemory(Region(2), kRegion, rdma::kAccessLocalWrite);
  auto foreign = *other_pd.RegisterMemory(Region(3), kRegion, all);

  rdma::QpInitAttr attr;
  attr.send_cq = &cq;
  attr.recv_cq = &cq;
  SoftQp qp(&pd, attr);
  size_t chunk = (mode & 0x0F) == 0 ? size : (mode & 0x0F);
  MemoryByteSource src({data + 1, size - 1}, chunk, /*eof=*/true);
  MemoryByteSink sink(1 << 16);
  QpConnParams params;
  params.crc = !(mode & 0x10);
  params.ird = 1 + ((mode >> 5) & 3);
  params.ord = 2;
  params.mulpdu = 512;
  qp.StartWithIo(&src, &sink, params);

  // Two receive buffers (rw region bytes 0-63 and 64-127) and one outstanding Read
  // whose response lands in rw bytes 128-191.
  rdma::Sge r0{reinterpret_cast<uint64_t>(Region(0)), 64, rw->lkey()};
  rdma::Sge r1{reinterpret_cast<uint64_t>(Region(0)) + 64, 64, rw->lkey()};
  (void)qp.PostRecv({1, {&r0, 1}});
  (void)qp.PostRecv({2, {&r1, 1}});
  rdma::Sge sinkbuf{reinterpret_cast<uint64_t>(Region(0)) + 128, 64, rw->lkey()};
  rdma::SendWr rd;
  rd.wr_id = 3;
  rd.opcode = rdma::WrOpcode::kRdmaRead;
  rd.sg_list = {&sinkbuf, 1};
  rd.rkey = 0x1234;
  rd.remote_addr = 0x1000;
  (void)qp.PostSend(rd);

  for (int i = 0; i < 4 && qp.state() != rdma::QpState::kError; ++i) {
    qp.OnReadable();
    qp.OnWritable();
  }

  // Invariants.
  for (size_t k = 0; k < kCanary; ++k)
    if (arena[k] != kCanaryByte) __builtin_trap();
  for (int i = 0; i < 4; ++i) {
    const uint8_t* after = Region(i) + kRegion;
    for (size_t k = 0; k < kCanary; ++k)
      if (after[k] != kCanaryByte) __builtin_trap();
    if (i == 0) continue;  // remotely writable / receive buffers / read sink
    for (size_t k = 0; k < kRegion; ++k)
      if (Region(i)[k] != kRegionByte) __builtin_trap();
  }
  rdma::WorkCompletion wc[8];
  while (cq.Poll(wc) > 0) {
  }
  (void)ro;
  (void)local;
  (void)foreign;
  return 0;
}
