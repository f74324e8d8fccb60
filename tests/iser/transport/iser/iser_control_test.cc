// ParseControlPdu and SplitControlPdu: the BHS, AHS and data segment of an iSER Send, and the Sends
// whose length disagrees with their BHS.
#include "iser/transport/iser/iser_control.h"

#include <vector>

#include "gtest/gtest.h"
#include "iser/pdu/bhs.h"

namespace iser::iser_transport {
namespace {

std::vector<uint8_t> Pdu(uint32_t dsl, size_t actual_data, uint8_t ahs_words = 0) {
  pdu::Bhs b = pdu::Bhs::Make(pdu::Opcode::kScsiResponse, pdu::kFlagFinal);
  b.set_data_segment_length(dsl);
  b.data()[4] = ahs_words;  // TotalAHSLength in 4-byte words
  std::vector<uint8_t> out(b.data(), b.data() + pdu::kBhsSize);
  out.resize(out.size() + ahs_words * 4 + actual_data, 0x5a);
  return out;
}

TEST(IserControl, TakesBhsAhsAndData) {
  auto p = ParseControlPdu(Pdu(18, 18, 1), 256, 8192);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->bhs.opcode(), pdu::Opcode::kScsiResponse);
  EXPECT_EQ(p->ahs.size(), 4u);
  ASSERT_EQ(p->data.size(), 18u);
  EXPECT_EQ(p->data[17], 0x5a);
}

TEST(IserControl, ToleratesPaddingOnly) {
  EXPECT_TRUE(ParseControlPdu(Pdu(18, 20), 256, 8192).ok());   // padded to 4 bytes
  EXPECT_FALSE(ParseControlPdu(Pdu(18, 24), 256, 8192).ok());  // more than padding
  EXPECT_FALSE(ParseControlPdu(Pdu(18, 17), 256, 8192).ok());  // short
}

TEST(IserControl, RefusesOversizedAndTruncated) {
  EXPECT_FALSE(ParseControlPdu(Pdu(9000, 9000), 256, 8192).ok());
  EXPECT_FALSE(ParseControlPdu(Pdu(0, 0, 70), 256, 8192).ok());  // 280-byte AHS
  std::vector<uint8_t> short_bhs(47, 0);
  EXPECT_FALSE(ParseControlPdu(short_bhs, 256, 8192).ok());
}

TEST(IserControl, PlacesDataWhereTheCallerSays) {
  std::vector<uint8_t> task(32, 0);
  auto p = ParseControlPdu(Pdu(18, 18), 256, 8192, [&](const pdu::Bhs&) {
    return std::span<uint8_t>(task).subspan(4, 18);
  });
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->placed);
  EXPECT_TRUE(p->owned.empty());
  EXPECT_EQ(p->data.data(), task.data() + 4);
  EXPECT_EQ(task[4], 0x5a);
  EXPECT_EQ(task[21], 0x5a);
  EXPECT_EQ(task[22], 0);
  // A span of the wrong size is not used: the data is copied out as usual.
  auto q = ParseControlPdu(Pdu(18, 18), 256, 8192,
                           [&](const pdu::Bhs&) { return std::span<uint8_t>(task).subspan(0, 4); });
  ASSERT_TRUE(q.ok());
  EXPECT_FALSE(q->placed);
  EXPECT_EQ(q->data.size(), 18u);
}

TEST(IserControl, SplitLeavesTheDataWhereItWas) {
  // BHS and the rest received into different buffers (the target's scattered receive).
  std::vector<uint8_t> whole = Pdu(18, 20, 2);
  std::vector<uint8_t> rest(whole.begin() + pdu::kBhsSize, whole.end());
  auto p = SplitControlPdu(std::span<const uint8_t>(whole).first<pdu::kBhsSize>(), rest, 256, 8192);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->ahs.size(), 8u);
  EXPECT_EQ(p->data.data(), rest.data() + 8);  // not copied
  EXPECT_EQ(p->data.size(), 18u);
  EXPECT_TRUE(p->owned.empty());
  EXPECT_FALSE(p->placed);
  std::vector<uint8_t> too_long(rest.size() + 4, 0);
  EXPECT_FALSE(
      SplitControlPdu(std::span<const uint8_t>(whole).first<pdu::kBhsSize>(), too_long, 256, 8192)
          .ok());
  std::vector<uint8_t> too_short(rest.begin(), rest.end() - 3);
  EXPECT_FALSE(
      SplitControlPdu(std::span<const uint8_t>(whole).first<pdu::kBhsSize>(), too_short, 256, 8192)
          .ok());
}

TEST(IserControl, CompletionErrors) {
  rdma::WorkCompletion wc;
  wc.status = rdma::WcStatus::kWrFlushErr;
  EXPECT_EQ(CompletionError(wc).code(), absl::StatusCode::kUnavailable);
  wc.status = rdma::WcStatus::kRemAccessErr;
  EXPECT_EQ(CompletionError(wc).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace iser::iser_transport
