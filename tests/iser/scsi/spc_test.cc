// SPC commands: INQUIRY, TEST UNIT READY, REPORT LUNS, REQUEST SENSE, unknown opcodes and
// LUNs, REPORT SUPPORTED OPERATION CODES.
#include <string>

#include "tests/iser/scsi/scsi_test_util.h"

namespace iser::scsi::testing {
namespace {

using SpcTest = ScsiTest;

TEST_F(SpcTest, TestUnitReadyGood) { EXPECT_TRUE(Run({op::kTestUnitReady, 0, 0, 0, 0, 0}).Good()); }

TEST_F(SpcTest, StandardInquiry) {
  Result r = Run({op::kInquiry, 0, 0, 0, 96, 0}, 96);
  ASSERT_TRUE(r.Good());
  ASSERT_EQ(r.data.size(), 96u);
  EXPECT_EQ(r.data[0], 0x00);         // disk, PQ 0
  EXPECT_EQ(r.data[2], 0x06);         // SPC-4
  EXPECT_EQ(r.data[3] & 0x0f, 0x02);  // response data format
  EXPECT_EQ(r.data[4], 91);           // additional length
  EXPECT_EQ(std::string(r.data.begin() + 8, r.data.begin() + 16), "ISERCSI ");
  EXPECT_EQ(r.cdb_transfer_length, 96u);
  bool spc4 = false, sbc3 = false;
  for (int i = 58; i < 74; i += 2) {
    uint16_t v = Get16(&r.data[i]);
    spc4 |= v >= 0x0460 && v <= 0x047f;
    sbc3 |= v >= 0x04c0 && v <= 0x04df;
  }
  EXPECT_TRUE(spc4);
  EXPECT_TRUE(sbc3);
}

TEST_F(SpcTest, InquiryAllocationLengthTruncates) {
  Result r = Run({op::kInquiry, 0, 0, 0, 5, 0}, 255);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.data.size(), 5u);
  EXPECT_EQ(r.cdb_transfer_length, 5u);         // underflow against EDTL 255
  r = Run({op::kInquiry, 0, 0, 1, 0, 0}, 255);  // allocation length 256
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.data.size(), 96u);
  EXPECT_EQ(r.cdb_transfer_length, 96u);
}

TEST_F(SpcTest, InquiryInvalidFields) {
  // Page code with EVPD = 0.
  EXPECT_TRUE(Run({op::kInquiry, 0, 0x80, 0, 96, 0}, 96).Check(sense::kInvalidFieldInCdb));
  // Unsupported VPD page.
  EXPECT_TRUE(Run({op::kInquiry, 1, 0x99, 0, 96, 0}, 96).Check(sense::kInvalidFieldInCdb));
  // CMDDT.
  EXPECT_TRUE(Run({op::kInquiry, 2, 0, 0, 96, 0}, 96).Check(sense::kInvalidFieldInCdb));
}

TEST_F(SpcTest, SupportedVpdPagesAreAllServed) {
  Result r = Run({op::kInquiry, 1, 0x00, 0, 255, 0}, 255);
  ASSERT_TRUE(r.Good());
  ASSERT_GE(r.data.size(), 4u);
  uint16_t n = Get16(&r.data[2]);
  ASSERT_EQ(r.data.size(), 4u + n);
  std::vector<uint8_t> pages(r.data.begin() + 4, r.data.end());
  for (uint8_t want : {0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2}) {
    EXPECT_NE(std::find(pages.begin(), pages.end(), want), pages.end()) << int(want);
  }
  for (uint8_t p : pages) {
    Result v = Run({op::kInquiry, 1, p, 0, 255, 0}, 255);
    ASSERT_TRUE(v.Good()) << int(p);
    EXPECT_EQ(v.data[1], p);
    EXPECT_EQ(v.data.size(), 4u + Get16(&v.data[2]));
  }
}

TEST_F(SpcTest, UnitSerialNumber) {
  Result r = Run({op::kInquiry, 1, 0x80, 0, 255, 0}, 255);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(std::string(r.data.begin() + 4, r.data.end()), "SERIAL0001");
}

TEST_F(SpcTest, DeviceIdentificationDesignators) {
  Result r = Run({op::kInquiry, 1, 0x83, 0, 255, 0}, 512);
  ASSERT_TRUE(r.Good());
  bool naa = false, t10 = false, name = false, rtp = false, tpg = false;
  size_t off = 4;
  while (off + 4 <= r.data.size()) {
    uint8_t type = r.data[off + 1] & 0x0f;
    uint8_t assoc = (r.data[off + 1] >> 4) & 3;
    uint8_t len = r.data[off + 3];
    if (type == 3 && assoc == 0) naa = (r.data[off + 4] >> 4) == 6 && len == 16;
    if (type == 1) t10 = true;
    if (type == 8 && assoc == 2) {
      std::string s(r.data.begin() + off + 4, r.data.begin() + off + 4 + len);
      name = s.rfind("iqn.2024-01.io.iser:target0", 0) == 0 && len % 4 == 0;
    }
    if (type == 4) rtp = Get16(&r.data[off + 6]) == 1;
    if (type == 5) tpg = true;
    off += 4 + len;
  }
  EXPECT_EQ(off, r.data.size());
  EXPECT_TRUE(naa);
  EXPECT_TRUE(t10);
  EXPECT_TRUE(name);
  EXPECT_TRUE(rtp);
  EXPECT_TRUE(tpg);
}

TEST_F(SpcTest, BlockLimitsAndProvisioning) {
  Result b0 = Run({op::kInquiry, 1, 0xb0, 0, 255, 0}, 255);
  ASSERT_TRUE(b0.Good());
  EXPECT_EQ(Get16(&b0.data[2]), 0x3c);
  EXPECT_GT(b0.data[5], 0);            // MAXIMUM COMPARE AND WRITE LENGTH
  EXPECT_GT(Get32(&b0.data[8]), 0u);   // MAXIMUM TRANSFER LENGTH
  EXPECT_GT(Get32(&b0.data[20]), 0u);  // MAXIMUM UNMAP LBA COUNT
  EXPECT_GT(Get32(&b0.data[24]), 0u);  // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
  Result b2 = Run({op::kInquiry, 1, 0xb2, 0, 255, 0}, 255);
  ASSERT_TRUE(b2.Good());
  EXPECT_EQ(b2.data[5] & 0xe4, 0xe4);  // LBPU LBPWS LBPWS10 LBPRZ
  Result b1 = Run({op::kInquiry, 1, 0xb1, 0, 255, 0}, 255);
  ASSERT_TRUE(b1.Good());
  EXPECT_EQ(Get16(&b1.data[4]), 1);  // non-rotating
}

TEST_F(SpcTest, ThickStoreHasNoUnmap) {
  auto thick = std::make_shared<MemoryBlockStore>(64 * kBs, kBs, /*thin=*/false);
  ASSERT_TRUE(dev_.AddLogicalUnit(1, thick, {}).ok());
  Run({op::kTestUnitReady, 0, 0, 0, 0, 0}, 0, {}, nullptr, 1);  // power-on UA
  Result b2 = Run({op::kInquiry, 1, 0xb2, 0, 255, 0}, 255, {}, nullptr, 1);
  ASSERT_TRUE(b2.Good());
  EXPECT_EQ(b2.data[5], 0);
  std::vector<uint8_t> unmap = {op::kUnmap, 0, 0, 0, 0, 0, 0, 0, 24, 0};
  Result r = Run(unmap, 0, std::vector<uint8_t>(24, 0), nullptr, 1);
  EXPECT_TRUE(r.Check(sense::kInvalidOpcode));
}

TEST_F(SpcTest, ReportLuns) {
  auto s2 = std::make_shared<MemoryBlockStore>(64 * kBs, kBs);
  ASSERT_TRUE(dev_.AddLogicalUnit(300, s2, {}).ok());
  Result r = Run({op::kReportLuns, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 256);
  ASSERT_TRUE(r.Good());
  ASSERT_EQ(r.data.size(), 24u);
  EXPECT_EQ(Get32(&r.data[0]), 16u);
  EXPECT_EQ(r.data[8], 0);
  EXPECT_EQ(r.data[9], 0);
  EXPECT_EQ(r.data[16], 0x41);  // flat space addressing for 300
  EXPECT_EQ(r.data[17], 300 & 0xff);
  // Answered for a LUN that does not exist, too.
  EXPECT_TRUE(Run({op::kReportLuns, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 256, {}, nullptr, 7).Good());
  // Allocation length below 16 and bad SELECT REPORT.
  EXPECT_TRUE(
      Run({op::kReportLuns, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0}, 8).Check(sense::kInvalidFieldInCdb));
  EXPECT_TRUE(Run({op::kReportLuns, 0, 0x05, 0, 0, 0, 0, 0, 1, 0, 0, 0}, 256)
                  .Check(sense::kInvalidFieldInCdb));
}

TEST_F(SpcTest, NonexistentLun) {
  Result inq = Run({op::kInquiry, 0, 0, 0, 96, 0}, 96, {}, nullptr, 5);
  ASSERT_TRUE(inq.Good());
  EXPECT_EQ(inq.data[0], 0x7f);  // PQ 3, type 1Fh
  EXPECT_TRUE(
      Run({op::kTestUnitReady, 0, 0, 0, 0, 0}, 0, {}, nullptr, 5).Check(sense::kLunNotSupported));
  EXPECT_TRUE(Run(Rw10(op::kRead10, 0, 1), kBs, {}, nullptr, 5).Check(sense::kLunNotSupported));
  Result rs = Run({op::kRequestSense, 0, 0, 0, 252, 0}, 252, {}, nullptr, 5);
  ASSERT_TRUE(rs.Good());
  EXPECT_EQ(ParseSense(rs.data), sense::kLunNotSupported);
}

TEST_F(SpcTest, UnsupportedOpcodes) {
  // SANITIZE, EXTENDED COPY, RECEIVE COPY RESULTS, WRITE ATOMIC(16), garbage.
  for (uint8_t opcode : {0x48, 0x83, 0x84, 0x9c, 0xff, 0x02}) {
    EXPECT_TRUE(Run({opcode, 0, 0, 0, 0, 0, 0, 0, 0, 0}).Check(sense::kInvalidOpcode))
        << int(opcode);
  }
  // Known opcode, unknown service action.
  Result r = Run({0x9e, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 32);
  EXPECT_TRUE(r.Check(sense::kInvalidFieldInCdb));
}

TEST_F(SpcTest, NacaBitRejected) {
  EXPECT_TRUE(Run({op::kTestUnitReady, 0, 0, 0, 0, 0x04}).Check(sense::kInvalidFieldInCdb));
}

TEST_F(SpcTest, InvalidFieldCarriesFieldPointer) {
  Result r = Run({op::kInquiry, 1, 0x99, 0, 96, 0}, 96);
  ASSERT_EQ(r.raw_sense.size(), 18u);
  EXPECT_EQ(r.raw_sense[15], 0xc0);  // SKSV, C/D = CDB
  EXPECT_EQ(Get16(&r.raw_sense[16]), 2);
}

TEST_F(SpcTest, RequestSenseNoSense) {
  Result r = Run({op::kRequestSense, 0, 0, 0, 18, 0}, 18);
  ASSERT_TRUE(r.Good());
  ASSERT_EQ(r.data.size(), 18u);
  EXPECT_EQ(r.data[0], 0x70);
  EXPECT_EQ(ParseSense(r.data), sense::kNoSense);
  r = Run({op::kRequestSense, 1, 0, 0, 252, 0}, 252);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.data[0], 0x72);
}

TEST_F(SpcTest, ReportSupportedOpcodesAll) {
  std::vector<uint8_t> cdb = {op::kMaintenanceIn, 0x0c, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0};
  Result r = Run(cdb, 0x4000);
  ASSERT_TRUE(r.Good());
  uint32_t len = Get32(&r.data[0]);
  ASSERT_EQ(r.data.size(), 4u + len);
  ASSERT_EQ(len % 8, 0u);
  bool read16 = false;
  for (size_t off = 4; off < r.data.size(); off += 8) {
    if (r.data[off] == op::kRead16) read16 = Get16(&r.data[off + 6]) == 16;
  }
  EXPECT_TRUE(read16);
  // With RCTD every descriptor is 20 bytes and has CTDP set.
  cdb[2] = 0x80;
  r = Run(cdb, 0x4000);
  ASSERT_TRUE(r.Good());
  len = Get32(&r.data[0]);
  ASSERT_EQ(len % 20, 0u);
  for (size_t off = 4; off < r.data.size(); off += 20) {
    EXPECT_EQ(r.data[off + 5] & 0x02, 0x02);
    EXPECT_EQ(Get16(&r.data[off + 8]), 0x0a);
  }
}

TEST_F(SpcTest, ReportSupportedOpcodesOne) {
  std::vector<uint8_t> cdb = {op::kMaintenanceIn, 0x0c, 1, op::kRead10, 0, 0, 0, 0, 1, 0, 0, 0};
  Result r = Run(cdb, 256);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.data[1] & 0x07, 3);
  EXPECT_EQ(Get16(&r.data[2]), 10);
  EXPECT_EQ(r.data[4], op::kRead10);
  // Service-action opcode with reporting option 1 is an invalid field.
  cdb[3] = op::kServiceActionIn16;
  EXPECT_TRUE(Run(cdb, 256).Check(sense::kInvalidFieldInCdb));
  // ... and fine with option 2.
  cdb[2] = 2;
  cdb[5] = 0x10;
  r = Run(cdb, 256);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.data[1] & 0x07, 3);
  EXPECT_EQ(r.data[5], 0x10);
  // Unsupported opcode.
  cdb = {op::kMaintenanceIn, 0x0c, 1, 0x48, 0, 0, 0, 0, 1, 0, 0, 0};
  r = Run(cdb, 256);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.data[1] & 0x07, 1);
}

}  // namespace
}  // namespace iser::scsi::testing
