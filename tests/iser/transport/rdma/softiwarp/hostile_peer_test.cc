// A hostile peer: RDMA Writes, Read Requests and Sends with unknown, invalidated,
// foreign and out-of-bounds STags, bad queue numbers and sequence numbers. Each must
// get the exact Terminate, the connection must close with everything flushed, and the
// canary bytes around every region must stay untouched.
#include <cstring>

#include "gtest/gtest.h"
#include "iser/transport/rdma/softiwarp/cq.h"
#include "iser/transport/rdma/softiwarp/device.h"
#include "iser/transport/rdma/softiwarp/qp.h"
#include "tests/iser/transport/rdma/softiwarp/test_util.h"

namespace iser::softiwarp {
namespace {

using testing::Fpdu;

constexpr size_t kCanary = 64;
constexpr size_t kRegion = 256;
constexpr uint8_t kCanaryByte = 0xCA;
constexpr uint8_t kRegionByte = 0x5A;

// Four regions, each with canaries before and after:
//   rw:      local write + remote write + remote read
//   ro:      local write + remote read only (no remote write)
//   local:   local write only
//   foreign: remote write+read, but in another PD
struct Victim {
  Victim() : dev(nullptr, {}), pd(&dev, 1), other_pd(&dev, 2), cq(1024, nullptr, nullptr) {
    std::memset(mem, kCanaryByte, sizeof(mem));
    for (int i = 0; i < 4; ++i) std::memset(Region(i), kRegionByte, kRegion);
    uint32_t all = rdma::kAccessLocalWrite | rdma::kAccessRemoteWrite | rdma::kAccessRemoteRead;
    rw = *pd.RegisterMemory(Region(0), kRegion, all);
    ro = *pd.RegisterMemory(Region(1), kRegion, rdma::kAccessLocalWrite | rdma::kAccessRemoteRead);
    local = *pd.RegisterMemory(Region(2), kRegion, rdma::kAccessLocalWrite);
    foreign = *other_pd.RegisterMemory(Region(3), kRegion, all);
    rdma::QpInitAttr attr;
    attr.send_cq = &cq;
    attr.recv_cq = &cq;
    qp = std::make_unique<SoftQp>(&pd, attr);
  }
  uint8_t* Region(int i) { return mem + kCanary + i * (kRegion + kCanary); }
  uint64_t Addr(int i) { return reinterpret_cast<uint64_t>(Region(i)); }

  // Feeds `bytes` to the QP.
  void Feed(const std::vector<uint8_t>& bytes, QpConnParams p = {}) {
    src = std::make_unique<MemoryByteSource>(bytes, 1 << 20);
    qp->StartWithIo(src.get(), &sink, p);
    qp->OnReadable();
  }

  void ExpectCanariesIntact() {
    for (int i = 0; i < 4; ++i) {
      const uint8_t* before = Region(i) - kCanary;
      const uint8_t* after = Region(i) + kRegion;
      for (size_t k = 0; k < kCanary; ++k) {
        ASSERT_EQ(before[k], kCanaryByte) << "region " << i << " canary before, byte " << k;
        ASSERT_EQ(after[k], kCanaryByte) << "region " << i << " canary after, byte " << k;
      }
    }
  }
  void ExpectRegionsUntouched() {
    for (int i = 0; i < 4; ++i)
      for (size_t k = 0; k < kRegion; ++k) ASSERT_EQ(Region(i)[k], kRegionByte) << i << " " << k;
  }

  // The Terminate this QP wrote, decoded from the wire bytes.
  std::optional<TerminateInfo> SentTerminate() {
    const std::vector<uint8_t>& s = sink.data();
    size_t off = 0;
    while (off + sizeof(TerminateHdr) <= s.size()) {
      uint16_t len = static_cast<uint16_t>(s[off] << 8 | s[off + 1]);
      if ((s[off + 3] & 0x0F) == 7) {
        size_t fpdu = FpduLength(len);
        EXPECT_LE(off + fpdu, s.size());
        // CRC over the FPDU must be right.
        uint32_t crc = ComputeCrc32cForTest(std::span<const uint8_t>(s).subspan(off, fpdu - 4));
        EXPECT_EQ(LoadCrcWire(&s[off + fpdu - 4]), crc);
        return DecodeTerminate(std::span<const uint8_t, 24>(&s[off], 24),
                               std::span<const uint8_t>(s).subspan(off + 24, len + 2 - 24));
      }
      off += FpduLength(len);
    }
    return std::nullopt;
  }
  static uint32_t ComputeCrc32cForTest(std::span<const uint8_t> b) { return ComputeCrc32c(b); }

  uint8_t mem[kCanary + 4 * (kRegion + kCanary)];
  SoftDevice dev;
  SoftPd pd, other_pd;
  SoftCq cq;
  std::unique_ptr<rdma::MemoryRegion> rw, ro, local, foreign;
  std::unique_ptr<SoftQp> qp;
  std::unique_ptr<MemoryByteSource> src;
  MemoryByteSink sink;
};

std::vector<uint8_t> Bytes(size_t n, uint8_t v = 0xEE) { return std::vector<uint8_t>(n, v); }

void ExpectTerminated(Victim& v, TermLayer layer, uint8_t etype, uint8_t ecode) {
  ASSERT_TRUE(v.qp->terminate_sent().has_value());
  EXPECT_EQ(v.qp->terminate_sent()->layer, layer);
  EXPECT_EQ(v.qp->terminate_sent()->etype, etype);
  EXPECT_EQ(v.qp->terminate_sent()->ecode, ecode);
  auto t = v.SentTerminate();
  ASSERT_TRUE(t.has_value()) << "no Terminate on the wire";
  EXPECT_EQ(t->layer, layer);
  EXPECT_EQ(t->etype, etype);
  EXPECT_EQ(t->ecode, ecode);
  EXPECT_EQ(v.qp->state(), rdma::QpState::kError);
  v.ExpectCanariesIntact();
}

struct WriteCase {
  const char* name;
  int target;         // region index, or -1 for an unknown STag
  int64_t to_offset;  // relative to the region start
  size_t len;
  uint8_t ecode;
  bool invalidate = false;
};

TEST(HostilePeerTest, RdmaWriteViolations) {
  const WriteCase cases[] = {
      {"unknown stag", -1, 0, 16, kDdpEcodeTInvalidStag},
      {"stale key", -2, 0, 16, kDdpEcodeTInvalidStag},
      {"invalidated stag", 0, 0, 16, kDdpEcodeTInvalidStag, true},
      {"past end", 0, kRegion - 8, 16, kDdpEcodeTBaseBounds},
      {"before base", 0, -1, 16, kDdpEcodeTBaseBounds},
      {"far away", 0, 1 << 20, 16, kDdpEcodeTBaseBounds},
      {"no remote write", 1, 0, 16, kDdpEcodeTInvalidStag},
      {"local only", 2, 0, 16, kDdpEcodeTInvalidStag},
      {"other pd", 3, 0, 16, kDdpEcodeTStagNotAssoc},
  };
  for (const WriteCase& c : cases) {
    SCOPED_TRACE(c.name);
    Victim v;
    rdma::MemoryRegion* mrs[] = {v.rw.get(), v.ro.get(), v.local.get(), v.foreign.get()};
    uint32_t stag = c.target == -1 ? 0x00ABCD01u
                    : c.target == -2 ? (v.rw->rkey() ^ 0x80)
                                     : mrs[c.target]->rkey();
    uint64_t base = v.Addr(c.target < 0 ? 0 : c.target);
    if (c.invalidate) ASSERT_EQ(v.dev.mrs().Invalidate(stag, 1), MrCheck::kOk);
    v.Feed(Fpdu(testing::WriteHdr(stag, base + c.to_offset), Bytes(c.len)));
    ExpectTerminated(v, TermLayer::kDdp, kDdpEtypeTagged, c.ecode);
    auto t = v.SentTerminate();
    ASSERT_TRUE(t.has_value());
    EXPECT_TRUE(t->m && t->d);
    EXPECT_EQ(t->segment_length, c.len);
    ASSERT_GE(t->terminated_hdrs.size(), 14u);
    EXPECT_EQ(t->terminated_hdrs[0], 0xC1);  // the offending DDP header
    v.ExpectRegionsUntouched();
  }
}

TEST(HostilePeerTest, ToWrapAndSecondSegmentOutOfBounds) {
  {
    Victim v;
    v.Feed(Fpdu(testing::WriteHdr(v.rw->rkey(), ~0ull - 3), Bytes(16)));
    ExpectTerminated(v, TermLayer::kDdp, kDdpEtypeTagged, kDdpEcodeTToWrap);
    v.ExpectRegionsUntouched();
  }
  {
    // A valid first segment, then one that runs past the end: only the first lands.
    Victim v;
    std::vector<uint8_t> s = Fpdu(testing::WriteHdr(v.rw->rkey(), v.Addr(0), false), Bytes(200));
    testing::Append(&s, Fpdu(testing::WriteHdr(v.rw->rkey(), v.Addr(0) + 200), Bytes(100)));
    v.Feed(s);
    ExpectTerminated(v, TermLayer::kDdp, kDdpEtypeTagged, kDdpEcodeTBaseBounds);
    for (size_t k = 0; k < 200; ++k) ASSERT_EQ(v.Region(0)[k], 0xEE);
    for (size_t k = 200; k < kRegion; ++k) ASSERT_EQ(v.Region(0)[k], kRegionByte);
  }
}

TEST(HostilePeerTest, ValidWriteLandsExactly) {
  Victim v;
  v.Feed(Fpdu(testing::WriteHdr(v.rw->rkey(), v.Addr(0) + 10), Bytes(kRegion - 10)));
  EXPECT_FALSE(v.qp->terminate_sent().has_value());
  EXPECT_EQ(v.qp->state(), rdma::QpState::kRts);
  for (size_t k = 0; k < 10; ++k) ASSERT_EQ(v.Region(0)[k], kRegionByte);
  for (size_t k = 10; k < kRegion; ++k) ASSERT_EQ(v.Region(0)[k], 0xEE);
  v.ExpectCanariesIntact();
}

struct ReadCase {
  const char* name;
  int target;
  int64_t to_offset;
  uint32_t len;
  uint8_t ecode;
  bool invalidate = false;
};

TEST(HostilePeerTest, ReadRequestViolations) {
  const ReadCase cases[] = {
      {"unknown stag", -1, 0, 16, kRdmapEcodeInvalidStag},
      {"invalidated stag", 0, 0, 16, kRdmapEcodeInvalidStag, true},
      {"past end", 0, kRegion - 8, 16, kRdmapEcodeBaseBounds},
      {"before base", 0, -4, 16, kRdmapEcodeBaseBounds},
      {"no remote read", 2, 0, 16, kRdmapEcodeAccessRights},
      {"other pd", 3, 0, 16, kRdmapEcodeStagNotAssoc},
  };
  for (const ReadCase& c : cases) {
    SCOPED_TRACE(c.name);
    Victim v;
    rdma::MemoryRegion* mrs[] = {v.rw.get(), v.ro.get(), v.local.get(), v.foreign.get()};
    uint32_t stag = c.target < 0 ? 0x00ABCD01u : mrs[c.target]->rkey();
    uint64_t base = v.Addr(c.target < 0 ? 0 : c.target);
    if (c.invalidate) ASSERT_EQ(v.dev.mrs().Invalidate(stag, 1), MrCheck::kOk);
    v.Feed(Fpdu(testing::ReadReqHdr(1, 0x1111, 0x2222, c.len, stag, base + c.to_offset)));
    ExpectTerminated(v, TermLayer::kRdmap, kRdmapEtypeRemoteProtection, c.ecode);
    auto t = v.SentTerminate();
    ASSERT_TRUE(t.has_value());
    EXPECT_TRUE(t->m && t->d && t->r);
    ASSERT_EQ(t->terminated_hdrs.size(), 46u);  // DDP header (18) + RDMA header (28)
    // No Read Response went out: the Terminate is the only FPDU.
    EXPECT_EQ(v.sink.data().size(), FpduLength(24 + 48 - 2));
    v.ExpectRegionsUntouched();
  }
}

TEST(HostilePeerTest, ValidReadRequestGetsResponse) {
  Victim v;
  v.Feed(Fpdu(testing::ReadReqHdr(1, 0x1111, 0x2222, 100, v.ro->rkey(), v.Addr(1) + 4)));
  EXPECT_FALSE(v.qp->terminate_sent().has_value());
  v.qp->OnWritable();
  const auto& s = v.sink.data();
  ASSERT_EQ(s.size(), FpduLength(14 + 100));
  EXPECT_EQ(s[2], 0xC1);
  EXPECT_EQ(s[3], 0x42);
  TaggedHdr t;
  std::memcpy(&t, s.data(), sizeof(t));
  EXPECT_EQ(t.stag.get(), 0x1111u);
  EXPECT_EQ(t.to.get(), 0x2222u);
  EXPECT_EQ(s[16], kRegionByte);
}

TEST(HostilePeerTest, ReadRequestsBeyondIrd) {
  Victim v;
  std::vector<uint8_t> s;
  for (uint32_t msn = 1; msn <= 3; ++msn)
    testing::Append(&s, Fpdu(testing::ReadReqHdr(msn, 1, 2, 8, v.rw->rkey(), v.Addr(0))));
  QpConnParams p;
  p.ird = 2;
  v.Feed(s, p);
  ExpectTerminated(v, TermLayer::kRdmap, kRdmapEtypeRemoteOperation,
                   kRdmapEcodeCatastrophicStream);
}

TEST(HostilePeerTest, UntaggedViolations) {
  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
    TermLayer layer;
    uint8_t etype, ecode;
    bool post_recv;
  };
  auto bad_qn = testing::SendHdr(1, 0);
  bad_qn.qn.set(3);
  auto rr_bad_msn = testing::ReadReqHdr(5, 1, 2, 0, 0, 0);
  const Case cases[] = {
      {"send without receive", Fpdu(testing::SendHdr(1, 0), Bytes(8)), TermLayer::kDdp,
       kDdpEtypeUntagged, kDdpEcodeUtNoBuffer, false},
      {"send bad msn", Fpdu(testing::SendHdr(2, 0), Bytes(8)), TermLayer::kDdp, kDdpEtypeUntagged,
       kDdpEcodeUtMsnRange, true},
      {"send bad mo", Fpdu(testing::SendHdr(1, 4), Bytes(8)), TermLayer::kDdp, kDdpEtypeUntagged,
       kDdpEcodeUtInvalidMo, true},
      {"send bad qn", Fpdu(bad_qn, Bytes(8)), TermLayer::kDdp, kDdpEtypeUntagged,
       kDdpEcodeUtInvalidQn, true},
      {"send too long", Fpdu(testing::SendHdr(1, 0), Bytes(65)), TermLayer::kDdp,
       kDdpEtypeUntagged, kDdpEcodeUtTooLong, true},
      {"read request bad msn", Fpdu(rr_bad_msn), TermLayer::kDdp, kDdpEtypeUntagged,
       kDdpEcodeUtMsnRange, false},
      {"unsolicited read response", Fpdu(testing::ReadResponseHdr(1, 2), Bytes(8)),
       TermLayer::kRdmap, kRdmapEtypeRemoteOperation, kRdmapEcodeOpcode, false},
      {"send with invalidate of unknown stag",
       Fpdu(testing::SendHdr(1, 0, true, RdmapOpcode::kSendInv, 0x00777701), Bytes(8)),
       TermLayer::kRdmap, kRdmapEtypeRemoteProtection, kRdmapEcodeCantInvalidate, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Victim v;
    // The receive buffer is the first 64 bytes of the rw region.
    rdma::Sge sge{v.Addr(0), 64, v.rw->lkey()};
    if (c.post_recv) ASSERT_TRUE(v.qp->PostRecv({42, {&sge, 1}}).ok());
    v.Feed(c.bytes);
    ExpectTerminated(v, c.layer, c.etype, c.ecode);
    // Everything posted completes (flushed or in error), nothing stays pending.
    rdma::WorkCompletion wc[4];
    int n = v.cq.Poll(wc);
    ASSERT_EQ(n, c.post_recv ? 1 : 0);
    if (n == 1) {
      EXPECT_EQ(wc[0].wr_id, 42u);
      EXPECT_NE(wc[0].status, rdma::WcStatus::kSuccess);
      if (c.ecode == kDdpEcodeUtTooLong && c.layer == TermLayer::kDdp)
        EXPECT_EQ(wc[0].status, rdma::WcStatus::kLocLenErr);
    }
    for (size_t k = 64; k < kRegion; ++k) ASSERT_EQ(v.Region(0)[k], kRegionByte);
  }
}

TEST(HostilePeerTest, SendWithInvalidateInvalidates) {
  Victim v;
  rdma::Sge sge{v.Addr(0), 64, v.rw->lkey()};
  ASSERT_TRUE(v.qp->PostRecv({1, {&sge, 1}}).ok());
  uint32_t target = v.ro->rkey();
  std::vector<uint8_t> s =
      Fpdu(testing::SendHdr(1, 0, true, RdmapOpcode::kSendSeInv, target), Bytes(8));
  // Now the invalidated STag must be refused.
  testing::Append(&s, Fpdu(testing::ReadReqHdr(1, 1, 2, 8, target, v.Addr(1))));
  v.Feed(s);
  rdma::WorkCompletion wc[2];
  ASSERT_EQ(v.cq.Poll({wc, 1}), 1);
  EXPECT_EQ(wc[0].status, rdma::WcStatus::kSuccess);
  EXPECT_TRUE(wc[0].wc_flags & rdma::kWcWithInv);
  EXPECT_EQ(wc[0].invalidated_rkey, target);
  ExpectTerminated(v, TermLayer::kRdmap, kRdmapEtypeRemoteProtection, kRdmapEcodeInvalidStag);
}

TEST(HostilePeerTest, CorruptCrcAndGarbage) {
  {
    Victim v;
    auto f = Fpdu(testing::WriteHdr(v.rw->rkey(), v.Addr(0)), Bytes(16));
    f.back() ^= 0xFF;
    v.Feed(f);
    ExpectTerminated(v, TermLayer::kLlp, kLlpEtypeMpa, kLlpEcodeCrc);
  }
  {
    Victim v;
    v.Feed(std::vector<uint8_t>(64, 0xFF));
    ASSERT_TRUE(v.qp->terminate_sent().has_value());
    v.ExpectCanariesIntact();
    v.ExpectRegionsUntouched();
  }
}

TEST(HostilePeerTest, PeerTerminateFailsOutstandingRead) {
  SoftDevice dev(nullptr, {});
  SoftPd pd(&dev, 1);
  SoftCq cq(64, nullptr, nullptr);
  rdma::QpInitAttr attr;
  attr.send_cq = &cq;
  attr.recv_cq = &cq;
  SoftQp qp(&pd, attr);
  std::vector<uint8_t> buf(64);
  auto mr = pd.RegisterMemory(buf.data(), buf.size(), rdma::kAccessLocalWrite);
  ASSERT_TRUE(mr.ok());
  MemoryByteSink sink;
  std::vector<uint8_t> in;
  MemoryByteSource src(in, 1 << 20);
  qp.StartWithIo(&src, &sink, {});
  rdma::Sge sge{reinterpret_cast<uint64_t>(buf.data()), 64, (*mr)->lkey()};
  rdma::SendWr rd;
  rd.wr_id = 9;
  rd.opcode = rdma::WrOpcode::kRdmaRead;
  rd.sg_list = {&sge, 1};
  rd.rkey = 0x1234;
  rd.remote_addr = 0x1000;
  ASSERT_TRUE(qp.PostSend(rd).ok());
  rdma::SendWr s2;
  s2.wr_id = 10;
  s2.sg_list = {&sge, 1};
  s2.send_flags = rdma::kSendSignaled;
  ASSERT_TRUE(qp.PostSend(s2).ok());
  // The peer answers with a Terminate: invalid STag for our Read's source.
  in = EncodeTerminate(ReadSourceTermError(MrCheck::kInvalidStag), {});
  in = testing::Fpdu(std::span<const uint8_t>(in), {});
  src.Extend(in);
  qp.OnReadable();
  ASSERT_TRUE(qp.terminate_received().has_value());
  EXPECT_EQ(qp.terminate_received()->etype, kRdmapEtypeRemoteProtection);
  EXPECT_FALSE(qp.terminate_sent().has_value());
  rdma::WorkCompletion wc[4];
  ASSERT_EQ(cq.Poll(wc), 2);
  EXPECT_EQ(wc[0].wr_id, 9u);
  EXPECT_EQ(wc[0].status, rdma::WcStatus::kRemAccessErr);
  EXPECT_EQ(wc[1].wr_id, 10u);
  // The Send had left before the Terminate arrived; it completes in order after the
  // Read, as success.
  EXPECT_EQ(wc[1].status, rdma::WcStatus::kSuccess);
  EXPECT_EQ(qp.state(), rdma::QpState::kError);
}

}  // namespace
}  // namespace iser::softiwarp
