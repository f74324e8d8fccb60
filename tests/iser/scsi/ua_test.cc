// Unit attention sequencing and task management events.
#include "tests/iser/scsi/scsi_test_util.h"

namespace iser::scsi::testing {
namespace {

using UaTest = ScsiTest;

const std::vector<uint8_t> kTur = {op::kTestUnitReady, 0, 0, 0, 0, 0};

TEST_F(UaTest, NewNexusGetsPowerOnResetOnce) {
  ItNexus n3 = MakeNexus(3, "iqn.x:3", 3);
  dev_.NexusCreated(n3);
  // INQUIRY and REPORT LUNS neither report nor clear it.
  EXPECT_TRUE(Run({op::kInquiry, 0, 0, 0, 36, 0}, 36, {}, &n3).Good());
  EXPECT_TRUE(Run({op::kReportLuns, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 256, {}, &n3).Good());
  EXPECT_TRUE(Run(kTur, 0, {}, &n3).Check(sense::kPowerOnReset));
  EXPECT_TRUE(Run(kTur, 0, {}, &n3).Good());
}

TEST_F(UaTest, RequestSenseReturnsAndClearsUa) {
  dev_.LogicalUnitReset(0, n1_);
  Result r = Run({op::kRequestSense, 0, 0, 0, 18, 0}, 18);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(ParseSense(r.data), sense::kLunResetOccurred);
  EXPECT_TRUE(Run(kTur).Good());
  EXPECT_TRUE(Run(kTur, 0, {}, &n2_).Check(sense::kLunResetOccurred));
}

TEST_F(UaTest, CapacityChanged) {
  ASSERT_TRUE(dev_.Resize(0, 4096ull * kBs).ok());
  EXPECT_TRUE(Run(kTur).Check(sense::kCapacityDataChanged));
  Result r = Run({op::kReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(Get32(&r.data[0]), 4095u);
  EXPECT_TRUE(Run(kTur, 0, {}, &n2_).Check(sense::kCapacityDataChanged));
}

TEST_F(UaTest, UaReportedBeforeInvalidOpcode) {
  dev_.TargetReset(false, n2_);
  EXPECT_TRUE(Run({0xff, 0, 0, 0, 0, 0}).Check(sense::kPowerOnReset));
  EXPECT_TRUE(Run({0xff, 0, 0, 0, 0, 0}).Check(sense::kInvalidOpcode));
}

TEST_F(UaTest, NewLunReportsLunsChanged) {
  auto s2 = std::make_shared<MemoryBlockStore>(64 * kBs, kBs);
  ASSERT_TRUE(dev_.AddLogicalUnit(1, s2, {}).ok());
  EXPECT_TRUE(Run(kTur).Check(sense::kReportedLunsDataChanged));
  EXPECT_TRUE(Run(kTur, 0, {}, nullptr, 1).Check(sense::kPowerOnReset));
}

TEST_F(UaTest, StopStartUnit) {
  EXPECT_TRUE(Run({op::kStartStopUnit, 0, 0, 0, 0x00, 0}).Good());
  EXPECT_TRUE(Run(kTur).Check(sense::kNotReadyStartUnitRequired));
  EXPECT_TRUE(Read(0, 1).Check(sense::kNotReadyStartUnitRequired));
  EXPECT_TRUE(Run({op::kInquiry, 0, 0, 0, 36, 0}, 36).Good());
  EXPECT_TRUE(Run({op::kStartStopUnit, 0, 0, 0, 0x01, 0}).Good());
  EXPECT_TRUE(Run(kTur).Good());
  // LOEJ on a non-removable medium.
  EXPECT_TRUE(Run({op::kStartStopUnit, 1, 0, 0, 0x02, 0}).Check(sense::kInvalidFieldInCdb));
  // Power conditions are accepted and leave the unit started.
  EXPECT_TRUE(Run({op::kStartStopUnit, 0, 0, 0, 0x30, 0}).Good());
  EXPECT_TRUE(Run(kTur).Good());
}

}  // namespace
}  // namespace iser::scsi::testing
