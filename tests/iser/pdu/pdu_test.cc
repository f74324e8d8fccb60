#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "iser/pdu/bhs.h"
#include "iser/pdu/digest.h"
#include "iser/pdu/pdu_reader.h"

namespace iser::pdu {
namespace {

// Serializes a PDU the way the TCP transport does.
std::vector<uint8_t> Wire(Bhs bhs, const std::vector<uint8_t>& data, bool hd, bool dd) {
  bhs.set_data_segment_length(static_cast<uint32_t>(data.size()));
  std::vector<uint8_t> out(bhs.data(), bhs.data() + kBhsSize);
  if (hd) {
    uint8_t d[4];
    StoreDigest(ComputeCrc32c({bhs.data(), kBhsSize}), d);
    out.insert(out.end(), d, d + 4);
  }
  if (!data.empty()) {
    std::vector<uint8_t> padded = data;
    padded.resize(PaddedLength(static_cast<uint32_t>(data.size())), 0);
    out.insert(out.end(), padded.begin(), padded.end());
    if (dd) {
      uint8_t d[4];
      StoreDigest(ComputeCrc32c(padded), d);
      out.insert(out.end(), d, d + 4);
    }
  }
  return out;
}

TEST(Crc32cTest, MatchesRfc3720Vectors) {
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xff), inc(32);
  for (int i = 0; i < 32; ++i) inc[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(ComputeCrc32c(zeros), 0x8a9136aau);
  EXPECT_EQ(ComputeCrc32c(ones), 0x62a8ab43u);
  EXPECT_EQ(ComputeCrc32c(inc), 0x46dd794eu);
  uint8_t wire[4];
  StoreDigest(0x8a9136aa, wire);
  EXPECT_EQ(wire[0], 0xaa);  // least significant byte first
  EXPECT_EQ(LoadDigest(wire), 0x8a9136aau);
  Crc32c incremental;
  incremental.Update({inc.data(), 5});
  incremental.Update({inc.data() + 5, 27});
  EXPECT_EQ(incremental.Final(), 0x46dd794eu);
}

TEST(BhsTest, FieldsRoundTrip) {
  Bhs b = Bhs::Make(Opcode::kScsiCommand, 0xc1);
  b.set_immediate(true);
  b.set_data_segment_length(0x123456);
  b.set_itt(0xdeadbeef);
  b.set_u48(field::kIsid, 0x0000123456789abcULL & 0xffffffffffffULL);
  EXPECT_EQ(b.opcode(), Opcode::kScsiCommand);
  EXPECT_TRUE(b.immediate());
  EXPECT_EQ(b.data_segment_length(), 0x123456u);
  EXPECT_EQ(b.itt(), 0xdeadbeefu);
  EXPECT_EQ(b.u48(field::kIsid), 0x123456789abcULL);
  EXPECT_EQ(b.data()[16], 0xde);
}

TEST(BhsTest, LunEncoding) {
  EXPECT_EQ(DecodeLun(EncodeLun(0)), 0u);
  EXPECT_EQ(DecodeLun(EncodeLun(5)), 5u);
  EXPECT_EQ(DecodeLun(EncodeLun(300)), 300u);
  EXPECT_EQ(EncodeLun(300) >> 62, 1u);                      // flat space addressing above 255
  EXPECT_EQ(DecodeLun(0xc000000000000000ULL), UINT64_MAX);  // extended addressing
  EXPECT_EQ(DecodeLun(0x0001000100000000ULL), UINT64_MAX);  // second level LUN
}

TEST(BhsTest, SerialArithmeticWraps) {
  EXPECT_TRUE(SnLess(1, 2));
  EXPECT_TRUE(SnLess(0xffffffff, 0));
  EXPECT_FALSE(SnLess(0, 0xffffffff));
  EXPECT_TRUE(SnLessEq(7, 7));
  EXPECT_FALSE(SnLess(7, 7));
}

struct ReaderCase {
  bool header_digest;
  bool data_digest;
  bool place;
};

class PduReaderSplitTest : public ::testing::TestWithParam<ReaderCase> {};

// Three PDUs back to back, fed with every possible split into two chunks and byte by
// byte, must decode identically.
TEST_P(PduReaderSplitTest, EverySplitDecodesTheSame) {
  const ReaderCase c = GetParam();
  Bhs login = Bhs::Make(Opcode::kLoginRequest, 0x87);
  std::vector<uint8_t> text = {'a', '=', 'b', 0, 'c', '=', 'd', 0, 'x'};  // 9: needs padding
  Bhs cmd = Bhs::Make(Opcode::kScsiCommand, 0xc1);
  cmd.set_itt(7);
  Bhs dout = Bhs::Make(Opcode::kDataOut, 0x80);
  dout.set_itt(7);
  std::vector<uint8_t> payload(1000);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 7);
  std::vector<uint8_t> stream;
  for (auto& part : {Wire(login, text, c.header_digest, c.data_digest),
                     Wire(cmd, {}, c.header_digest, c.data_digest),
                     Wire(dout, payload, c.header_digest, c.data_digest)})
    stream.insert(stream.end(), part.begin(), part.end());

  auto decode = [&](const std::vector<size_t>& cuts) {
    PduReader r;
    r.set_header_digest(c.header_digest);
    r.set_data_digest(c.data_digest);
    std::vector<uint8_t> placed(payload.size());
    r.set_placement([&](const Bhs& b, std::span<const uint8_t>) {
      if (!c.place || b.opcode() != Opcode::kDataOut) return std::span<uint8_t>();
      return std::span<uint8_t>(placed);
    });
    std::vector<std::vector<uint8_t>> datas;
    std::vector<Opcode> ops;
    size_t prev = 0;
    std::vector<size_t> all = cuts;
    all.push_back(stream.size());
    for (size_t cut : all) {
      size_t pos = prev;
      while (pos < cut) {
        bool complete = false;
        auto used = r.Feed({stream.data() + pos, cut - pos}, &complete);
        EXPECT_TRUE(used.ok()) << used.status();
        if (!used.ok()) return std::make_pair(ops, datas);
        pos += *used;
        if (complete) {
          ReceivedPdu p = r.TakePdu();
          EXPECT_TRUE(p.data_digest_ok);
          ops.push_back(p.bhs.opcode());
          datas.emplace_back(p.data.begin(), p.data.end());
          if (c.place && p.bhs.opcode() == Opcode::kDataOut) EXPECT_TRUE(p.placed);
        }
      }
      prev = cut;
    }
    EXPECT_TRUE(r.at_pdu_boundary());
    return std::make_pair(ops, datas);
  };

  auto [ops, datas] = decode({});
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(ops[0], Opcode::kLoginRequest);
  EXPECT_EQ(datas[0], text);
  EXPECT_TRUE(datas[1].empty());
  EXPECT_EQ(datas[2], payload);
  for (size_t cut = 1; cut < stream.size(); ++cut) {
    auto got = decode({cut});
    ASSERT_EQ(got.first, ops) << "split at " << cut;
    ASSERT_EQ(got.second, datas) << "split at " << cut;
  }
  std::vector<size_t> every;
  for (size_t i = 1; i < stream.size(); ++i) every.push_back(i);
  EXPECT_EQ(decode(every).second, datas);
}

INSTANTIATE_TEST_SUITE_P(Digests, PduReaderSplitTest,
                         ::testing::Values(ReaderCase{false, false, false},
                                           ReaderCase{true, false, false},
                                           ReaderCase{false, true, true},
                                           ReaderCase{true, true, true}));

TEST(PduReaderTest, HeaderDigestMismatchIsFatal) {
  Bhs b = Bhs::Make(Opcode::kNopOut, 0x80);
  std::vector<uint8_t> w = Wire(b, {}, true, false);
  w[48] ^= 1;
  PduReader r;
  r.set_header_digest(true);
  bool complete = false;
  auto used = r.Feed(w, &complete);
  EXPECT_FALSE(used.ok());
  EXPECT_EQ(used.status().code(), absl::StatusCode::kDataLoss);
}

TEST(PduReaderTest, DataDigestMismatchIsReported) {
  Bhs b = Bhs::Make(Opcode::kNopOut, 0x80);
  std::vector<uint8_t> w = Wire(b, {1, 2, 3, 4}, false, true);
  w.back() ^= 0xff;
  PduReader r;
  r.set_data_digest(true);
  bool complete = false;
  auto used = r.Feed(w, &complete);
  ASSERT_TRUE(used.ok());
  ASSERT_TRUE(complete);
  EXPECT_FALSE(r.TakePdu().data_digest_ok);
}

TEST(PduReaderTest, OversizedSegmentIsFatal) {
  Bhs b = Bhs::Make(Opcode::kDataOut, 0x80);
  b.set_data_segment_length(8193);
  PduReader r;
  r.set_max_data_segment(8192);
  bool complete = false;
  auto used = r.Feed(b.span(), &complete);
  EXPECT_FALSE(used.ok());
  EXPECT_EQ(used.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PduReaderTest, AhsIsReturned) {
  Bhs b = Bhs::Make(Opcode::kScsiCommand, 0x80);
  b.set_ahs_words(2);
  std::vector<uint8_t> w(b.data(), b.data() + kBhsSize);
  for (int i = 0; i < 8; ++i) w.push_back(static_cast<uint8_t>(0x10 + i));
  PduReader r;
  bool complete = false;
  auto used = r.Feed(w, &complete);
  ASSERT_TRUE(used.ok());
  ASSERT_TRUE(complete);
  ReceivedPdu p = r.TakePdu();
  ASSERT_EQ(p.ahs.size(), 8u);
  EXPECT_EQ(p.ahs[7], 0x17);
}

}  // namespace
}  // namespace iser::pdu
