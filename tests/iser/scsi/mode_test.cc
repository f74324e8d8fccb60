// MODE SENSE / MODE SELECT.
#include "tests/iser/scsi/scsi_test_util.h"

namespace iser::scsi::testing {
namespace {

using ModeTest = ScsiTest;

std::vector<uint8_t> Sense6(uint8_t page, uint8_t pc = 0, uint8_t alloc = 255, bool dbd = false) {
  return {op::kModeSense6, uint8_t(dbd ? 0x08 : 0), uint8_t(pc << 6 | page), 0, alloc, 0};
}

// Returns the page `code` from MODE SENSE(6) data, or empty.
std::vector<uint8_t> FindPage(const std::vector<uint8_t>& d, uint8_t code) {
  size_t off = 4 + d[3];
  while (off + 2 <= d.size()) {
    if ((d[off] & 0x3f) == code) {
      return std::vector<uint8_t>(d.begin() + off, d.begin() + off + 2 + d[off + 1]);
    }
    off += 2 + d[off + 1];
  }
  return {};
}

TEST_F(ModeTest, AllPages) {
  Result r = Run(Sense6(0x3f), 255);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.data[0], r.data.size() - 1);
  EXPECT_EQ(r.data[2] & 0x10, 0x10);  // DPOFUA
  EXPECT_EQ(r.data[3], 8);            // one block descriptor
  EXPECT_EQ(Get24(&r.data[4 + 5]), kBs);
  EXPECT_EQ(FindPage(r.data, 0x08).size(), 20u);
  EXPECT_EQ(FindPage(r.data, 0x0a).size(), 12u);
  EXPECT_EQ(FindPage(r.data, 0x1c).size(), 12u);
  EXPECT_EQ(r.cdb_transfer_length, r.data.size());
}

TEST_F(ModeTest, ShortAllocationNoOverflow) {
  Result r = Run(Sense6(0x3f, 0, 4), 4);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.data.size(), 4u);
  EXPECT_EQ(r.cdb_transfer_length, 4u);
}

TEST_F(ModeTest, ModeSense10LongLba) {
  std::vector<uint8_t> c = {op::kModeSense10, 0x10, 0x08, 0, 0, 0, 0, 0x01, 0x00, 0};
  Result r = Run(c, 256);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(Get16(&r.data[0]), r.data.size() - 2);
  EXPECT_EQ(r.data[4] & 1, 1);
  EXPECT_EQ(Get16(&r.data[6]), 16);
  EXPECT_EQ(Get64(&r.data[8]), kBlocks);
  EXPECT_EQ(r.data[24], 0x08);
}

TEST_F(ModeTest, InvalidPagesAndSaved) {
  EXPECT_TRUE(Run(Sense6(0x05), 255).Check(sense::kInvalidFieldInCdb));
  EXPECT_TRUE(Run(Sense6(0x08, 3), 255).Check(sense::kSavingParametersNotSupported));
  std::vector<uint8_t> sub = {op::kModeSense6, 0, 0x0a, 0x05, 255, 0};
  EXPECT_TRUE(Run(sub, 255).Check(sense::kInvalidFieldInCdb));
}

TEST_F(ModeTest, ChangeableMask) {
  Result r = Run(Sense6(0x0a, 1), 255);
  ASSERT_TRUE(r.Good());
  auto p = FindPage(r.data, 0x0a);
  ASSERT_EQ(p.size(), 12u);
  EXPECT_EQ(p[2], 0x04);  // D_SENSE
  EXPECT_EQ(p[4], 0x08);  // SWP
}

std::vector<uint8_t> ControlPage(bool d_sense, bool swp) {
  std::vector<uint8_t> p = {0, 0, 0, 0, 0x0a, 0x0a, 0, 0x10, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
  if (d_sense) p[6] |= 0x04;
  if (swp) p[8] |= 0x08;
  return p;
}

TEST_F(ModeTest, DSenseSwitchesSenseFormat) {
  auto p = ControlPage(true, false);
  ASSERT_TRUE(Run({op::kModeSelect6, 0x10, 0, 0, uint8_t(p.size()), 0}, 0, p).Good());
  Result r = Run(Rw10(op::kRead10, kBlocks, 1), kBs);
  ASSERT_TRUE(r.Check(sense::kLbaOutOfRange));
  EXPECT_EQ(r.raw_sense[0], 0x72);
  p = ControlPage(false, false);
  ASSERT_TRUE(Run({op::kModeSelect6, 0x10, 0, 0, uint8_t(p.size()), 0}, 0, p).Good());
  r = Run(Rw10(op::kRead10, kBlocks, 1), kBs);
  EXPECT_EQ(r.raw_sense[0], 0x70);
}

TEST_F(ModeTest, SoftwareWriteProtect) {
  auto p = ControlPage(false, true);
  ASSERT_TRUE(Run({op::kModeSelect6, 0x10, 0, 0, uint8_t(p.size()), 0}, 0, p).Good());
  EXPECT_TRUE(Write(0, Pattern(kBs, 0)).Check(sense::kWriteProtected));
  Result ms = Run(Sense6(0x0a), 255);
  EXPECT_EQ(ms.data[2] & 0x80, 0x80);  // WP
  EXPECT_TRUE(Read(0, 1).Good());
  p = ControlPage(false, false);
  ASSERT_TRUE(Run({op::kModeSelect6, 0x10, 0, 0, uint8_t(p.size()), 0}, 0, p).Good());
  EXPECT_TRUE(Write(0, Pattern(kBs, 0)).Good());
}

TEST_F(ModeTest, SelectValidation) {
  auto p = ControlPage(false, false);
  // PF = 0, SP = 1.
  EXPECT_TRUE(Run({op::kModeSelect6, 0x00, 0, 0, uint8_t(p.size()), 0}, 0, p)
                  .Check(sense::kInvalidFieldInCdb));
  EXPECT_TRUE(Run({op::kModeSelect6, 0x11, 0, 0, uint8_t(p.size()), 0}, 0, p)
                  .Check(sense::kInvalidFieldInCdb));
  // Changing a non-changeable bit (QAM).
  auto bad = p;
  bad[7] = 0x00;
  EXPECT_TRUE(Run({op::kModeSelect6, 0x10, 0, 0, uint8_t(bad.size()), 0}, 0, bad)
                  .Check(sense::kInvalidFieldInParameterList));
  // Wrong page length.
  bad = p;
  bad[5] = 0x08;
  EXPECT_TRUE(Run({op::kModeSelect6, 0x10, 0, 0, uint8_t(bad.size()), 0}, 0, bad)
                  .Check(sense::kInvalidFieldInParameterList));
  // Unknown page.
  bad = p;
  bad[4] = 0x05;
  EXPECT_TRUE(Run({op::kModeSelect6, 0x10, 0, 0, uint8_t(bad.size()), 0}, 0, bad)
                  .Check(sense::kInvalidFieldInParameterList));
  // Truncated header.
  EXPECT_TRUE(
      Run({op::kModeSelect6, 0x10, 0, 0, 2, 0}, 0, {0, 0}).Check(sense::kParameterListLengthError));
}

TEST_F(ModeTest, SelectTellsOtherNexusesOnly) {
  auto p = ControlPage(true, false);
  ASSERT_TRUE(Run({op::kModeSelect6, 0x10, 0, 0, uint8_t(p.size()), 0}, 0, p).Good());
  EXPECT_TRUE(Run({op::kTestUnitReady, 0, 0, 0, 0, 0}).Good());
  EXPECT_TRUE(
      Run({op::kTestUnitReady, 0, 0, 0, 0, 0}, 0, {}, &n2_).Check(sense::kModeParametersChanged));
  EXPECT_TRUE(Run({op::kTestUnitReady, 0, 0, 0, 0, 0}, 0, {}, &n2_).Good());
}

}  // namespace
}  // namespace iser::scsi::testing
