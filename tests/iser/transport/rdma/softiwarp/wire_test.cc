// Wire-format unit tests: CRC32c vectors, MPA frames (v1/v2, IRD/ORD, RTR), FPDU
// framing, opcode table, Terminate encoding, negotiation, STag table.
#include <cstring>
#include <numeric>
#include <string>

#include "gtest/gtest.h"
#include "iser/transport/rdma/softiwarp/crc32c.h"
#include "iser/transport/rdma/softiwarp/ddp_rdmap_wire.h"
#include "iser/transport/rdma/softiwarp/mpa_handshake.h"
#include "iser/transport/rdma/softiwarp/mpa_wire.h"
#include "iser/transport/rdma/softiwarp/mr_table.h"
#include "iser/transport/rdma/softiwarp/tx.h"
#include "iser/transport/rdma/verbs.h"
#include "tests/iser/transport/rdma/softiwarp/test_util.h"

namespace iser::softiwarp {
namespace {

std::vector<uint8_t> WireCrc(std::span<const uint8_t> data) {
  uint8_t b[4];
  StoreCrcWire(ComputeCrc32c(data), b);
  return {b, b + 4};
}

// RFC 3720 appendix B.4 (the CRC as it appears on the wire, LSB first).
TEST(Crc32cTest, Rfc3720Vectors) {
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF), inc(32), dec(32);
  std::iota(inc.begin(), inc.end(), 0);
  for (int i = 0; i < 32; ++i) dec[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(WireCrc(zeros), (std::vector<uint8_t>{0xaa, 0x36, 0x91, 0x8a}));
  EXPECT_EQ(WireCrc(ones), (std::vector<uint8_t>{0x43, 0xab, 0xa8, 0x62}));
  EXPECT_EQ(WireCrc(inc), (std::vector<uint8_t>{0x4e, 0x79, 0xdd, 0x46}));
  EXPECT_EQ(WireCrc(dec), (std::vector<uint8_t>{0x5c, 0xdb, 0x3f, 0x11}));
  std::vector<uint8_t> read_cmd = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(WireCrc(read_cmd), (std::vector<uint8_t>{0x56, 0x3a, 0x96, 0xd9}));
}

TEST(Crc32cTest, CheckValueAndIncremental) {
  const std::string s = "123456789";
  std::span<const uint8_t> b(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  EXPECT_EQ(ComputeCrc32c(b), 0xE3069283u);
  Crc32c c;
  c.Update(b.first(4));
  c.Update(b.subspan(4));
  EXPECT_EQ(c.Value(), 0xE3069283u);
  uint8_t w[4];
  StoreCrcWire(0x83992352u, w);
  EXPECT_EQ(w[0], 0x52);
  EXPECT_EQ(w[3], 0x83);
  EXPECT_EQ(LoadCrcWire(w), 0x83992352u);
}

TEST(MpaWireTest, HeaderLayout) {
  MpaFrame f;
  f.crc = true;
  f.enhanced = false;
  f.revision = 1;
  f.private_data = {1, 2, 3};
  auto b = EncodeMpaFrame(f);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->size(), 23u);
  EXPECT_EQ(std::string(b->begin(), b->begin() + 16), "MPA ID Req Frame");
  EXPECT_EQ((*b)[16], 0x40);
  EXPECT_EQ((*b)[17], 1);
  EXPECT_EQ((*b)[18], 0);
  EXPECT_EQ((*b)[19], 3);
  auto d = DecodeMpaFrame(*b, false);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->crc);
  EXPECT_FALSE(d->enhanced);
  EXPECT_EQ(d->private_data, f.private_data);
  EXPECT_FALSE(DecodeMpaFrame(*b, /*expect_reply=*/true).ok());
}

TEST(MpaWireTest, V2IrdOrdAndRtrBits) {
  MpaFrame f;
  f.reply = true;
  f.enhanced = true;
  f.ird = 0x12;
  f.ord = 0x34;
  f.peer_to_peer = true;
  f.rtr = kRtrWrite | kRtrRead | kRtrSend;
  f.private_data = {0x80, 0, 0, 0};  // iser_cm_hdr
  auto b = EncodeMpaFrame(f);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(std::string(b->begin(), b->begin() + 16), "MPA ID Rep Frame");
  EXPECT_EQ((*b)[16], kMpaFlagEnhanced);
  EXPECT_EQ((*b)[17], 2);
  EXPECT_EQ((*b)[19], 8);  // PD_Length counts the v2 word
  EXPECT_EQ((*b)[20], 0xC0);  // A|B|IRD hi
  EXPECT_EQ((*b)[21], 0x12);
  EXPECT_EQ((*b)[22], 0xC0);  // C|D|ORD hi
  EXPECT_EQ((*b)[23], 0x34);
  auto d = DecodeMpaFrame(*b, true);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->enhanced);
  EXPECT_TRUE(d->peer_to_peer);
  EXPECT_EQ(d->ird, 0x12);
  EXPECT_EQ(d->ord, 0x34);
  EXPECT_EQ(d->rtr, kRtrWrite | kRtrRead | kRtrSend);
  EXPECT_EQ(d->private_data, f.private_data);  // word hidden from the ULP
}

TEST(MpaWireTest, RejectsBadFrames) {
  MpaFrame f;
  auto b = EncodeMpaFrame(f);
  ASSERT_TRUE(b.ok());
  auto bad_key = *b;
  bad_key[3] = 'x';
  EXPECT_FALSE(DecodeMpaFrame(bad_key, false).ok());
  auto too_long = *b;
  too_long[18] = 0x02;
  too_long[19] = 0x01;  // 513
  EXPECT_FALSE(DecodeMpaHeader(std::span<const uint8_t, 20>(too_long.data(), 20), false).ok());
  // S=1 and Rev 2 but PD_Length < 4.
  std::vector<uint8_t> v2(b->begin(), b->begin() + 20);
  v2[16] = kMpaFlagEnhanced;
  v2[17] = 2;
  v2[18] = 0;
  v2[19] = 2;
  v2.push_back(0);
  v2.push_back(0);
  EXPECT_FALSE(DecodeMpaFrame(v2, false).ok());
  // Private data limits: 256 interop, 512 absolute.
  MpaFrame big;
  big.enhanced = false;
  big.private_data.resize(300);
  EXPECT_FALSE(EncodeMpaFrame(big).ok());
  EXPECT_TRUE(EncodeMpaFrame(big, kMpaMaxPrivateData).ok());
  big.private_data.resize(513);
  EXPECT_FALSE(EncodeMpaFrame(big, 4096).ok());
}

TEST(MpaNegotiationTest, V2PeerToPeer) {
  MpaLocal init{true, true, true, 8, 4};
  MpaFrame req = MakeMpaRequest(init, std::vector<uint8_t>{0x80, 0, 0, 0});
  EXPECT_TRUE(req.enhanced);
  EXPECT_EQ(req.rtr, kRtrWrite);
  MpaLocal resp{false, true, true, 2, 16};
  MpaNegotiated rn;
  MpaFrame rep = MakeMpaReply(req, resp, {}, false, &rn);
  EXPECT_FALSE(rep.reject);
  EXPECT_TRUE(rep.crc);          // C=1 in either frame turns CRC on
  EXPECT_EQ(rep.ird, 4);         // at least the initiator's ORD
  EXPECT_EQ(rep.ord, 8);         // at most the initiator's IRD
  EXPECT_EQ(rep.rtr, kRtrWrite);
  EXPECT_EQ(rn.rtr, kRtrWrite);
  auto n = ProcessMpaReply(req, rep);
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(n->crc);
  EXPECT_EQ(n->ord, 4u);
  EXPECT_LE(n->ord, rep.ird);
  EXPECT_EQ(n->rtr, kRtrWrite);
}

TEST(MpaNegotiationTest, MarkersRejectedAndRefused) {
  MpaFrame req = MakeMpaRequest({}, {});
  req.markers = true;
  MpaFrame rep = MakeMpaReply(req, {}, {}, false, nullptr);
  EXPECT_TRUE(rep.reject);
  EXPECT_FALSE(rep.markers);
  MpaFrame ok_req = MakeMpaRequest({}, {});
  MpaFrame marker_reply = MakeMpaReply(ok_req, {}, {}, false, nullptr);
  marker_reply.markers = true;
  EXPECT_FALSE(ProcessMpaReply(ok_req, marker_reply).ok());
}

TEST(MpaNegotiationTest, V1PeerAndCrcOff) {
  MpaFrame req;  // a v1 initiator without CRC (like siw's default)
  req.enhanced = false;
  req.revision = 1;
  req.crc = false;
  MpaLocal resp;
  resp.crc = false;
  MpaNegotiated n;
  MpaFrame rep = MakeMpaReply(req, resp, {}, false, &n);
  EXPECT_FALSE(rep.enhanced);
  EXPECT_FALSE(rep.crc);
  EXPECT_FALSE(n.crc);
  EXPECT_EQ(n.rtr, kRtrNone);
}

TEST(MpaFrameReaderTest, SplitAtEveryOffsetAndNoOverRead) {
  MpaFrame req = MakeMpaRequest({}, std::vector<uint8_t>{0x80, 0, 0, 0});
  auto frame = EncodeMpaFrame(req);
  ASSERT_TRUE(frame.ok());
  std::vector<uint8_t> stream = *frame;
  const size_t frame_len = stream.size();
  stream.insert(stream.end(), {0, 14, 0xC1, 0x40});  // start of the first FPDU
  for (size_t cut = 0; cut <= frame_len; ++cut) {
    MpaFrameReader r(/*expect_reply=*/false);
    MemoryByteSource src(std::span<const uint8_t>(stream).first(cut), 1000);
    auto o = r.Pump(src);
    if (cut < frame_len) {
      ASSERT_EQ(o, MpaFrameReader::Outcome::kNeedMore) << cut;
      src.Extend(stream);
      o = r.Pump(src);
    }
    ASSERT_EQ(o, MpaFrameReader::Outcome::kDone) << cut;
    EXPECT_EQ(src.consumed(), frame_len) << cut;  // the FPDU stays unread
    EXPECT_TRUE(r.frame().enhanced);
    EXPECT_EQ(r.frame().private_data, (std::vector<uint8_t>{0x80, 0, 0, 0}));
  }
  MpaFrameReader bad(/*expect_reply=*/true);  // a request where a reply is expected
  MemoryByteSource src(stream, 1000);
  EXPECT_EQ(bad.Pump(src), MpaFrameReader::Outcome::kBadFrame);
}

TEST(MpaWireTest, FpduArithmetic) {
  EXPECT_EQ(FpduPadLength(2), 0u);
  EXPECT_EQ(FpduPadLength(18), 0u);   // 20 bytes
  EXPECT_EQ(FpduPadLength(19), 3u);
  EXPECT_EQ(FpduPadLength(21), 1u);
  EXPECT_EQ(FpduLength(14), 20u);
  EXPECT_EQ(MulpduForEmss(1460), 1454u);
  EXPECT_EQ(MulpduForEmss(100), 128u);
  EXPECT_EQ(MulpduForEmss(65483), 65474u);
}

TEST(FpduWriterTest, FramesPadAndCrcLsbFirst) {
  UntaggedHdr u = testing::SendHdr(1, 0);
  uint8_t payload[5] = {1, 2, 3, 4, 5};
  iovec iov{payload, 5};
  FpduWriter w;
  w.Prepare({reinterpret_cast<uint8_t*>(&u), sizeof(u)}, {&iov, 1}, true);
  MemoryByteSink sink(7);  // force partial writes
  while (w.Flush(sink) != FpduWriter::Result::kDone) {
  }
  std::vector<uint8_t>& out = sink.data();
  ASSERT_EQ(out.size(), 20u + 5 + 3 + 4);
  EXPECT_EQ(out[0], 0);
  EXPECT_EQ(out[1], 23);  // 18-byte DDP header + 5
  EXPECT_EQ(out[2], 0x41);
  EXPECT_EQ(out[3], 0x43);
  EXPECT_EQ(out[25], 0);
  EXPECT_EQ(out[27], 0);
  std::span<const uint8_t> covered(out.data(), 28);
  EXPECT_EQ(LoadCrcWire(out.data() + 28), ComputeCrc32c(covered));
  EXPECT_EQ(out, testing::Fpdu(u, payload));
}

TEST(OpTableTest, MatchesRfc5040) {
  struct Want {
    RdmapOpcode op;
    uint8_t ddp, rdmap, hdr;
  } want[] = {
      {RdmapOpcode::kRdmaWrite, 0xC1, 0x40, 16}, {RdmapOpcode::kReadRequest, 0x41, 0x41, 48},
      {RdmapOpcode::kReadResponse, 0xC1, 0x42, 16}, {RdmapOpcode::kSend, 0x41, 0x43, 20},
      {RdmapOpcode::kSendInv, 0x41, 0x44, 20}, {RdmapOpcode::kSendSe, 0x41, 0x45, 20},
      {RdmapOpcode::kSendSeInv, 0x41, 0x46, 20}, {RdmapOpcode::kTerminate, 0x41, 0x47, 24},
  };
  for (const Want& w : want) {
    const OpInfo& i = OpInfoOf(w.op);
    EXPECT_EQ(i.ddp_ctrl, w.ddp) << i.name;
    EXPECT_EQ(i.rdmap_ctrl, w.rdmap) << i.name;
    EXPECT_EQ(i.hdr_len, w.hdr) << i.name;
    EXPECT_EQ(i.tagged, (w.ddp & 0x80) != 0) << i.name;
  }
  EXPECT_EQ(OpInfoOf(RdmapOpcode::kReadRequest).qn, 1u);
  EXPECT_EQ(OpInfoOf(RdmapOpcode::kTerminate).qn, 2u);
}

TEST(TerminateTest, DdpTaggedErrorIncludesDdpHeader) {
  TaggedHdr w = testing::WriteHdr(0x1234, 0x1000);
  w.ctrl.mpa_len.set(14 + 100);  // 100 bytes of payload
  std::vector<uint8_t> t = EncodeTerminate(TaggedTermError(MrCheck::kBounds),
                                           {reinterpret_cast<uint8_t*>(&w), sizeof(w)});
  ASSERT_EQ(t.size(), 24u + 16);
  EXPECT_EQ(t[0] << 8 | t[1], 24 + 16 - 2);
  EXPECT_EQ(t[2], 0x41);
  EXPECT_EQ(t[3], 0x47);
  UntaggedHdr u;
  std::memcpy(&u, t.data(), sizeof(u));
  EXPECT_EQ(u.qn.get(), 2u);
  EXPECT_EQ(u.msn.get(), 1u);
  EXPECT_EQ(u.mo.get(), 0u);
  // Layer 1 (DDP), type 1 (tagged), code 1 (base/bounds), M and D.
  EXPECT_EQ(t[20], 0x11);
  EXPECT_EQ(t[21], 0x01);
  EXPECT_EQ(t[22], 0xC0);
  EXPECT_EQ(t[23], 0x00);
  EXPECT_EQ(t[24] << 8 | t[25], 100);  // DDP segment (payload) length
  EXPECT_EQ(std::memcmp(t.data() + 26, reinterpret_cast<uint8_t*>(&w) + 2, 14), 0);
  auto info = DecodeTerminate(std::span<const uint8_t, 24>(t.data(), 24),
                              std::span<const uint8_t>(t).subspan(24));
  EXPECT_EQ(info.layer, TermLayer::kDdp);
  EXPECT_EQ(info.etype, kDdpEtypeTagged);
  EXPECT_EQ(info.ecode, kDdpEcodeTBaseBounds);
  EXPECT_TRUE(info.m && info.d && !info.r);
  EXPECT_EQ(info.segment_length, 100);
}

TEST(TerminateTest, ReadRequestProtectionErrorIncludesRdmaHeader) {
  ReadRequestHdr r = testing::ReadReqHdr(1, 5, 6, 7, 8, 9);
  r.ddp.ctrl.mpa_len.set(46);
  std::vector<uint8_t> t = EncodeTerminate(ReadSourceTermError(MrCheck::kAccess),
                                           {reinterpret_cast<uint8_t*>(&r), sizeof(r)});
  ASSERT_EQ(t.size(), 24u + 48);
  EXPECT_EQ(t[20], 0x01);  // RDMAP, remote protection
  EXPECT_EQ(t[21], 0x02);  // access rights
  EXPECT_EQ(t[22], 0xE0);  // M D R
  EXPECT_EQ(std::memcmp(t.data() + 26, reinterpret_cast<uint8_t*>(&r) + 2, 46), 0);
}

TEST(TerminateTest, LlpAndVersionErrorsIncludeNothing) {
  auto t = EncodeTerminate(MakeTermError(TermLayer::kLlp, kLlpEtypeMpa, kLlpEcodeCrc), {});
  ASSERT_EQ(t.size(), 24u);
  EXPECT_EQ(t[20], 0x20);
  EXPECT_EQ(t[21], 0x02);
  EXPECT_EQ(t[22], 0x00);
  TaggedHdr w = testing::WriteHdr(1, 2);
  auto v = EncodeTerminate(
      MakeTermError(TermLayer::kRdmap, kRdmapEtypeRemoteOperation, kRdmapEcodeVersion),
      {reinterpret_cast<uint8_t*>(&w), sizeof(w)});
  EXPECT_EQ(v.size(), 24u);
  EXPECT_EQ(v[20], 0x02);
  EXPECT_EQ(v[21], 0x05);
}

TEST(MrTableTest, ChecksAndInvalidation) {
  MrTable t;
  uint32_t a = t.Register(1, 0x1000, 0x100, rdma::kAccessLocalWrite | rdma::kAccessRemoteWrite);
  uint32_t b = t.Register(1, 0x2000, 0x100, rdma::kAccessRemoteRead);
  EXPECT_NE(a >> 8, 0u);
  EXPECT_NE(a, b);
  EXPECT_EQ(t.Check(a, 1, 0x1000, 0x100, rdma::kAccessRemoteWrite), MrCheck::kOk);
  EXPECT_EQ(t.Check(a, 1, 0x10FF, 2, rdma::kAccessRemoteWrite), MrCheck::kBounds);
  EXPECT_EQ(t.Check(a, 1, 0xFFF, 1, rdma::kAccessRemoteWrite), MrCheck::kBounds);
  EXPECT_EQ(t.Check(a, 1, ~0ull, 2, rdma::kAccessRemoteWrite), MrCheck::kToWrap);
  EXPECT_EQ(t.Check(a, 2, 0x1000, 1, rdma::kAccessRemoteWrite), MrCheck::kPdMismatch);
  EXPECT_EQ(t.Check(a, 1, 0x1000, 1, rdma::kAccessRemoteRead), MrCheck::kAccess);
  EXPECT_EQ(t.Check(a ^ 1, 1, 0x1000, 1, rdma::kAccessRemoteWrite), MrCheck::kInvalidStag);
  EXPECT_EQ(t.Check(0, 1, 0x1000, 1, 0), MrCheck::kInvalidStag);
  EXPECT_EQ(t.Invalidate(a, 2), MrCheck::kPdMismatch);
  EXPECT_EQ(t.Invalidate(a, 1), MrCheck::kOk);
  EXPECT_EQ(t.Check(a, 1, 0x1000, 1, rdma::kAccessRemoteWrite), MrCheck::kInvalidated);
  ASSERT_TRUE(t.Revalidate(a).ok());
  EXPECT_EQ(t.Check(a, 1, 0x1000, 1, rdma::kAccessRemoteWrite), MrCheck::kOk);
  t.Deregister(a);
  uint32_t c = t.Register(1, 0x1000, 0x100, rdma::kAccessRemoteWrite);
  EXPECT_EQ(c >> 8, a >> 8);  // index reused...
  EXPECT_NE(c, a);            // ...with a new key
  EXPECT_EQ(t.Check(a, 1, 0x1000, 1, rdma::kAccessRemoteWrite), MrCheck::kInvalidStag);
}

TEST(SliceIovTest, CrossesEntries) {
  uint8_t a[4], b[4];
  iovec src[2] = {{a, 4}, {b, 4}};
  std::vector<iovec> out;
  SliceIov(src, 3, 3, &out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].iov_base, a + 3);
  EXPECT_EQ(out[0].iov_len, 1u);
  EXPECT_EQ(out[1].iov_base, b);
  EXPECT_EQ(out[1].iov_len, 2u);
}

}  // namespace
}  // namespace iser::softiwarp
