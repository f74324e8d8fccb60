// The receive state machine fed with input split at every byte offset, and DDP
// segmentation at the MULPDU between two QPs over in-memory byte streams.
#include "iser/transport/rdma/softiwarp/rx.h"

#include <cstring>
#include <numeric>

#include "gtest/gtest.h"
#include "iser/transport/rdma/softiwarp/cq.h"
#include "iser/transport/rdma/softiwarp/device.h"
#include "iser/transport/rdma/softiwarp/qp.h"
#include "tests/iser/transport/rdma/softiwarp/test_util.h"

namespace iser::softiwarp {
namespace {

using testing::Append;
using testing::Fpdu;

// Places every payload into one flat buffer and records the segments seen.
class RecordingHandler : public RxHandler {
 public:
  std::optional<TermError> OnSegmentHeader(const RxSegment& seg, std::vector<iovec>* dst) override {
    headers.push_back(seg.op);
    if (seg.payload_len > 0) {
      // Split the destination in two to exercise multi-iovec placement.
      size_t half = seg.payload_len / 2;
      dst->push_back({buf + used, half});
      dst->push_back({buf + used + half, seg.payload_len - half});
      used += seg.payload_len;
    }
    return std::nullopt;
  }
  std::optional<TermError> OnSegmentDone(const RxSegment& seg) override {
    done.push_back(seg.op);
    lasts.push_back(seg.last);
    return std::nullopt;
  }
  uint8_t buf[8192];
  size_t used = 0;
  std::vector<RdmapOpcode> headers, done;
  std::vector<bool> lasts;
};

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

std::vector<uint8_t> Stream(std::vector<uint8_t>* payloads) {
  std::vector<uint8_t> s;
  auto p1 = Pattern(37, 1), p2 = Pattern(100, 2), p3 = Pattern(3, 3);
  Append(&s, Fpdu(testing::SendHdr(1, 0, false), p1));
  Append(&s, Fpdu(testing::SendHdr(1, 37, true), p2));
  Append(&s, Fpdu(testing::WriteHdr(5, 0x1000), p3));
  Append(&s, Fpdu(testing::ReadReqHdr(1, 1, 2, 3, 4, 5)));
  Append(&s, Fpdu(testing::SendHdr(2, 0, true)));  // zero length
  Append(&s, Fpdu(testing::WriteHdr(5, 0x1000)));  // zero length tagged
  payloads->clear();
  Append(payloads, p1);
  Append(payloads, p2);
  Append(payloads, p3);
  return s;
}

void ExpectParsed(const RecordingHandler& h, const std::vector<uint8_t>& payloads) {
  ASSERT_EQ(h.done.size(), 6u);
  EXPECT_EQ(h.done[0], RdmapOpcode::kSend);
  EXPECT_FALSE(h.lasts[0]);
  EXPECT_TRUE(h.lasts[1]);
  EXPECT_EQ(h.done[2], RdmapOpcode::kRdmaWrite);
  EXPECT_EQ(h.done[3], RdmapOpcode::kReadRequest);
  EXPECT_EQ(h.done[4], RdmapOpcode::kSend);
  EXPECT_EQ(h.done[5], RdmapOpcode::kRdmaWrite);
  ASSERT_EQ(h.used, payloads.size());
  EXPECT_EQ(std::memcmp(h.buf, payloads.data(), payloads.size()), 0);
}

TEST(RxMachineTest, SplitAtEveryByteOffset) {
  std::vector<uint8_t> payloads;
  std::vector<uint8_t> s = Stream(&payloads);
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    RecordingHandler h;
    RxMachine rx(&h, true);
    MemoryByteSource src(std::span<const uint8_t>(s).first(cut), s.size());
    ASSERT_EQ(rx.Pump(src), RxMachine::Outcome::kWouldBlock) << "cut " << cut;
    src.Extend(s);
    ASSERT_EQ(rx.Pump(src), RxMachine::Outcome::kWouldBlock) << "cut " << cut;
    ExpectParsed(h, payloads);
    EXPECT_EQ(rx.state(), RxMachine::State::kHdr);
  }
}

TEST(RxMachineTest, ByteAtATimeAndSmallChunks) {
  std::vector<uint8_t> payloads;
  std::vector<uint8_t> s = Stream(&payloads);
  for (size_t chunk : {1, 2, 3, 5, 7, 16, 17}) {
    RecordingHandler h;
    RxMachine rx(&h, true);
    MemoryByteSource src(s, chunk, /*eof=*/true);
    EXPECT_EQ(rx.Pump(src), RxMachine::Outcome::kEof);
    ExpectParsed(h, payloads);
  }
}

TEST(RxMachineTest, CrcMismatchIsLlpError) {
  auto f = Fpdu(testing::SendHdr(1, 0), Pattern(10, 9));
  f[22] ^= 1;  // payload bit flip
  RecordingHandler h;
  RxMachine rx(&h, true);
  MemoryByteSource src(f, 1000);
  ASSERT_EQ(rx.Pump(src), RxMachine::Outcome::kProtocolError);
  EXPECT_EQ(rx.error(), MakeTermError(TermLayer::kLlp, kLlpEtypeMpa, kLlpEcodeCrc));
  EXPECT_TRUE(h.done.empty());
}

TEST(RxMachineTest, CrcOffIgnoresField) {
  auto f = Fpdu(testing::SendHdr(1, 0), Pattern(10, 9), /*crc=*/false);
  RecordingHandler h;
  RxMachine rx(&h, false);
  MemoryByteSource src(f, 1000);
  EXPECT_EQ(rx.Pump(src), RxMachine::Outcome::kWouldBlock);
  EXPECT_EQ(h.done.size(), 1u);
}

TEST(RxMachineTest, WireLevelErrors) {
  struct Case {
    std::vector<uint8_t> fpdu;
    TermError want;
  };
  auto ddp_v = testing::SendHdr(1, 0);
  ddp_v.ctrl.ddp_ctrl = 0x42;
  auto ddp_tv = testing::WriteHdr(1, 0);
  ddp_tv.ctrl.ddp_ctrl = 0xC0;
  auto rdmap_v = testing::SendHdr(1, 0);
  rdmap_v.ctrl.rdmap_ctrl = 0x83;
  auto bad_op = testing::SendHdr(1, 0);
  bad_op.ctrl.rdmap_ctrl = 0x49;
  auto t_mismatch = testing::SendHdr(1, 0);
  t_mismatch.ctrl.ddp_ctrl = 0xC1;  // tagged bit on a Send
  std::vector<Case> cases = {
      {Fpdu(ddp_v), MakeTermError(TermLayer::kDdp, kDdpEtypeUntagged, kDdpEcodeUtVersion)},
      {Fpdu(ddp_tv), MakeTermError(TermLayer::kDdp, kDdpEtypeTagged, kDdpEcodeTVersion)},
      {Fpdu(rdmap_v),
       MakeTermError(TermLayer::kRdmap, kRdmapEtypeRemoteOperation, kRdmapEcodeVersion)},
      {Fpdu(bad_op),
       MakeTermError(TermLayer::kRdmap, kRdmapEtypeRemoteOperation, kRdmapEcodeOpcode)},
      {Fpdu(t_mismatch),
       MakeTermError(TermLayer::kRdmap, kRdmapEtypeRemoteOperation, kRdmapEcodeOpcode)},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    RecordingHandler h;
    RxMachine rx(&h, true);
    MemoryByteSource src(cases[i].fpdu, 1000);
    ASSERT_EQ(rx.Pump(src), RxMachine::Outcome::kProtocolError) << i;
    EXPECT_EQ(rx.error(), cases[i].want) << i;
  }
  // ULPDU_Length shorter than the Read Request header.
  auto rr = Fpdu(testing::ReadReqHdr(1, 1, 2, 3, 4, 5));
  rr[0] = 0;
  rr[1] = 20;
  RecordingHandler h;
  RxMachine rx(&h, true);
  MemoryByteSource src(rr, 1000);
  EXPECT_EQ(rx.Pump(src), RxMachine::Outcome::kProtocolError);
}

// ---- DDP segmentation between two QPs wired back to back through memory ----

struct MemQp {
  explicit MemQp(SoftDevice* dev) {
    pd = std::make_unique<SoftPd>(dev, 1);
    cq = std::make_unique<SoftCq>(1024, nullptr, nullptr);
    rdma::QpInitAttr attr;
    attr.send_cq = cq.get();
    attr.recv_cq = cq.get();
    qp = std::make_unique<SoftQp>(pd.get(), attr);
  }
  std::unique_ptr<SoftPd> pd;
  std::unique_ptr<SoftCq> cq;
  std::unique_ptr<SoftQp> qp;
};

struct ParsedFpdu {
  uint16_t ulpdu;
  uint8_t ddp, rdmap;
  uint32_t mo;
  uint64_t to;
};

std::vector<ParsedFpdu> ParseFpdus(const std::vector<uint8_t>& s) {
  std::vector<ParsedFpdu> out;
  size_t off = 0;
  while (off + 2 <= s.size()) {
    uint16_t len = static_cast<uint16_t>(s[off] << 8 | s[off + 1]);
    ParsedFpdu p{len, s[off + 2], s[off + 3], 0, 0};
    if (p.ddp & 0x80) {
      TaggedHdr t;
      std::memcpy(&t, &s[off], sizeof(t));
      p.to = t.to.get();
    } else {
      UntaggedHdr u;
      std::memcpy(&u, &s[off], sizeof(u));
      p.mo = u.mo.get();
    }
    out.push_back(p);
    off += FpduLength(len);
  }
  EXPECT_EQ(off, s.size());
  return out;
}

TEST(SegmentationTest, SendAndWriteSplitAtMulpdu) {
  SoftDevice dev(nullptr, {});
  MemQp a(&dev), b(&dev);
  MemoryByteSink a_out, b_out;
  MemoryByteSource none({}, 1);
  QpConnParams p;
  p.mulpdu = 256;
  a.qp->StartWithIo(&none, &a_out, p);

  std::vector<uint8_t> src = Pattern(1000, 5), dst(2000, 0);
  auto src_mr = a.pd->RegisterMemory(src.data(), src.size(), rdma::kAccessLocalWrite);
  ASSERT_TRUE(src_mr.ok());
  auto dst_mr = b.pd->RegisterMemory(dst.data(), dst.size(),
                                     rdma::kAccessLocalWrite | rdma::kAccessRemoteWrite);
  ASSERT_TRUE(dst_mr.ok());
  rdma::Sge sge{reinterpret_cast<uint64_t>(src.data()), 1000, (*src_mr)->lkey()};
  rdma::Sge rsge{reinterpret_cast<uint64_t>(dst.data()) + 1000, 1000, (*dst_mr)->lkey()};
  ASSERT_TRUE(b.qp->PostRecv({7, {&rsge, 1}}).ok());
  rdma::SendWr send;
  send.wr_id = 1;
  send.sg_list = {&sge, 1};
  send.send_flags = rdma::kSendSignaled;
  ASSERT_TRUE(a.qp->PostSend(send).ok());
  rdma::SendWr write;
  write.wr_id = 2;
  write.opcode = rdma::WrOpcode::kRdmaWrite;
  write.sg_list = {&sge, 1};
  write.rkey = (*dst_mr)->rkey();
  write.remote_addr = reinterpret_cast<uint64_t>(dst.data());
  write.send_flags = rdma::kSendSignaled;
  ASSERT_TRUE(a.qp->PostSend(write).ok());

  auto fpdus = ParseFpdus(a_out.data());
  // Send: 1000 bytes in 238-byte pieces (256 - 18); Write: 242-byte pieces.
  ASSERT_EQ(fpdus.size(), 5u + 5u);
  uint32_t mo = 0;
  for (int i = 0; i < 5; ++i) {
    EXPECT_LE(fpdus[i].ulpdu, 256);
    EXPECT_EQ(fpdus[i].mo, mo);
    EXPECT_EQ((fpdus[i].ddp & 0x40) != 0, i == 4);
    mo += fpdus[i].ulpdu - 18;
  }
  EXPECT_EQ(mo, 1000u);
  uint64_t to = reinterpret_cast<uint64_t>(dst.data());
  for (int i = 5; i < 10; ++i) {
    EXPECT_LE(fpdus[i].ulpdu, 256);
    EXPECT_EQ(fpdus[i].to, to);
    EXPECT_EQ((fpdus[i].ddp & 0x40) != 0, i == 9);
    to += fpdus[i].ulpdu - 14;
  }

  MemoryByteSource in(a_out.data(), 13);
  b.qp->StartWithIo(&in, &b_out, p);
  b.qp->OnReadable();
  EXPECT_EQ(std::memcmp(dst.data() + 1000, src.data(), 1000), 0);
  EXPECT_EQ(std::memcmp(dst.data(), src.data(), 1000), 0);
  rdma::WorkCompletion wc[4];
  ASSERT_EQ(b.cq->Poll(wc), 1);
  EXPECT_EQ(wc[0].wr_id, 7u);
  EXPECT_EQ(wc[0].status, rdma::WcStatus::kSuccess);
  EXPECT_EQ(wc[0].byte_len, 1000u);
  ASSERT_EQ(a.cq->Poll(wc), 2);
  EXPECT_EQ(wc[0].wr_id, 1u);
  EXPECT_EQ(wc[1].wr_id, 2u);
  EXPECT_EQ(wc[1].opcode, rdma::WcOpcode::kRdmaWrite);
  EXPECT_FALSE(b.qp->terminate_sent().has_value());
}

// MULPDU follows the EMSS as TCP reports it now, read again before each message of 16 KiB
// or more or that needs more than one FPDU (Linux bounds the MSS by half the peer's window
// early on: on loopback 32,741 at connect time, 65,483 later), not only at setup.
TEST(SegmentationTest, MulpduFollowsTheEmssBeforeEachLargeMessage) {
  SoftDevice dev(nullptr, {});
  MemQp a(&dev), b(&dev);
  MemoryByteSink a_out;
  MemoryByteSource none({}, 1);
  uint32_t emss = 32741;
  int emss_reads = 0;
  QpConnParams p;
  p.mulpdu = MulpduForEmss(emss);
  p.current_emss = [&] {
    ++emss_reads;
    return emss;
  };
  a.qp->StartWithIo(&none, &a_out, p);
  std::vector<uint8_t> src = Pattern(131072, 9), dst(131072, 0);
  auto src_mr = a.pd->RegisterMemory(src.data(), src.size(), rdma::kAccessLocalWrite);
  auto dst_mr = b.pd->RegisterMemory(dst.data(), dst.size(),
                                     rdma::kAccessLocalWrite | rdma::kAccessRemoteWrite);
  ASSERT_TRUE(src_mr.ok() && dst_mr.ok());
  auto write = [&](uint32_t bytes) {
    a_out.data().clear();
    rdma::Sge sge{reinterpret_cast<uint64_t>(src.data()), bytes, (*src_mr)->lkey()};
    rdma::SendWr w;
    w.opcode = rdma::WrOpcode::kRdmaWrite;
    w.sg_list = {&sge, 1};
    w.rkey = (*dst_mr)->rkey();
    w.remote_addr = reinterpret_cast<uint64_t>(dst.data());
    EXPECT_TRUE(a.qp->PostSend(w).ok());
    std::vector<ParsedFpdu> fpdus = ParseFpdus(a_out.data());
    for (const ParsedFpdu& f : fpdus) EXPECT_LE(f.ulpdu, MulpduForEmss(emss));  // MULPDU: max ULPDU
    return fpdus.size();
  };
  EXPECT_EQ(write(131072), 5u);  // 32,720 bytes of payload per FPDU
  EXPECT_EQ(emss_reads, 1);
  emss = 65483;                  // the window opened
  EXPECT_EQ(write(131072), 3u);  // 65,464 per FPDU
  EXPECT_EQ(emss_reads, 2);
  EXPECT_EQ(write(4096), 1u);  // small and fits one FPDU: no getsockopt for it
  EXPECT_EQ(emss_reads, 2);
  emss = 1448;  // and down again (a path MTU change): the next 16 KiB message sees it
  EXPECT_EQ(write(16384), 12u);  // 1,428 per FPDU
  EXPECT_EQ(emss_reads, 3);
}

}  // namespace
}  // namespace iser::softiwarp
