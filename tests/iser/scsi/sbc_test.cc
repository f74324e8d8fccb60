// SBC media commands: READ/WRITE 6/10/12/16, READ CAPACITY, VERIFY, WRITE AND VERIFY,
// WRITE SAME, UNMAP, GET LBA STATUS, COMPARE AND WRITE, SYNCHRONIZE CACHE, PRE-FETCH.
#include "tests/iser/scsi/scsi_test_util.h"

namespace iser::scsi::testing {
namespace {

using SbcTest = ScsiTest;

TEST_F(SbcTest, ReadCapacity10And16) {
  Result r = Run({op::kReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(Get32(&r.data[0]), kBlocks - 1);
  EXPECT_EQ(Get32(&r.data[4]), kBs);
  // LBA without PMI is invalid.
  EXPECT_TRUE(
      Run({op::kReadCapacity10, 0, 0, 0, 0, 1, 0, 0, 0, 0}, 8).Check(sense::kInvalidFieldInCdb));
  std::vector<uint8_t> rc16 = {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0};
  r = Run(rc16, 32);
  ASSERT_TRUE(r.Good());
  ASSERT_EQ(r.data.size(), 32u);
  EXPECT_EQ(Get64(&r.data[0]), kBlocks - 1);
  EXPECT_EQ(Get32(&r.data[8]), kBs);
  EXPECT_EQ(r.data[14] & 0xc0, 0xc0);  // LBPME, LBPRZ
  EXPECT_EQ(r.data[13], 0);            // LBPPBE 0 unless configured
  rc16[13] = 0;                        // allocation length 0: nothing, still GOOD
  r = Run(rc16, 0);
  EXPECT_TRUE(r.Good());
  EXPECT_TRUE(r.data.empty());
}

TEST_F(SbcTest, WriteReadRoundTripAllSizes) {
  auto data = Pattern(4 * kBs, 3);
  ASSERT_TRUE(Run(Rw10(op::kWrite10, 10, 4), 0, data).Good());
  Result r = Run(Rw10(op::kRead10, 10, 4), 4 * kBs);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.data, data);
  EXPECT_EQ(r.cdb_transfer_length, 4 * kBs);
  r = Run(Rw12(op::kRead12, 10, 4), 4 * kBs);
  EXPECT_EQ(r.data, data);
  r = Run(Rw16(op::kRead16, 10, 4), 4 * kBs);
  EXPECT_EQ(r.data, data);
  r = Run({op::kRead6, 0, 0, 10, 4, 0}, 4 * kBs);
  EXPECT_EQ(r.data, data);
  auto d2 = Pattern(2 * kBs, 9);
  ASSERT_TRUE(Run({op::kWrite6, 0, 0, 20, 2, 0}, 0, d2).Good());
  ASSERT_TRUE(Run(Rw12(op::kWrite12, 30, 2), 0, d2).Good());
  ASSERT_TRUE(Run(Rw16(op::kWrite16, 40, 2), 0, d2).Good());
  EXPECT_EQ(Read(20, 2).data, d2);
  EXPECT_EQ(Read(30, 2).data, d2);
  EXPECT_EQ(Read(40, 2).data, d2);
}

TEST_F(SbcTest, PhysicalBlockExponentWhenConfigured) {
  LogicalUnitConfig cfg;
  cfg.physical_block_size = 4096;
  ASSERT_TRUE(dev_.AddLogicalUnit(3, std::make_shared<MemoryBlockStore>(64 * kBs, kBs), cfg).ok());
  Run({op::kTestUnitReady, 0, 0, 0, 0, 0}, 0, {}, nullptr, 3);
  std::vector<uint8_t> rc16 = {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0};
  Result r = Run(rc16, 32, {}, nullptr, 3);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.data[13], 3);
  Result b0 = Run({op::kInquiry, 1, 0xb0, 0, 255, 0}, 255, {}, nullptr, 3);
  EXPECT_EQ(Get32(&b0.data[28]), 8u);  // OPTIMAL UNMAP GRANULARITY
}

TEST_F(SbcTest, AsyncStoreCompletions) {
  store_->set_async(true);
  auto data = Pattern(kBs, 1);
  EXPECT_TRUE(Write(5, data).Good());
  EXPECT_EQ(Read(5, 1).data, data);
}

TEST_F(SbcTest, Read6ZeroMeans256Blocks) {
  Result r = Run({op::kRead6, 0, 0, 0, 0, 0}, 256 * kBs);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.data.size(), 256 * kBs);
  EXPECT_EQ(r.cdb_transfer_length, 256 * kBs);
}

struct OobCase {
  const char* name;
  std::vector<uint8_t> cdb;
};

TEST_F(SbcTest, BeyondEndOfLun) {
  const uint64_t n = kBlocks;
  std::vector<OobCase> cases = {
      {"read10 last+1", Rw10(op::kRead10, n, 1)},
      {"read10 straddle", Rw10(op::kRead10, n - 1, 2)},
      {"read10 -1", Rw10(op::kRead10, 0xffffffff, 1)},
      {"read10 0 blocks past end", Rw10(op::kRead10, n + 1, 0)},
      {"read12", Rw12(op::kRead12, n, 1)},
      {"read16 2^63", Rw16(op::kRead16, 1ull << 63, 1)},
      {"read16 -1", Rw16(op::kRead16, ~0ull, 1)},
      {"read6", {op::kRead6, 0, 0x08, 0, 1, 0}},
      {"verify10", Rw10(op::kVerify10, n, 1)},
      {"verify16", Rw16(op::kVerify16, n - 1, 2)},
      {"prefetch10", Rw10(op::kPreFetch10, n, 1)},
      {"prefetch16", Rw16(op::kPreFetch16, n + 1, 0)},
      {"synccache10", Rw10(op::kSynchronizeCache10, n, 1)},
      {"synccache16", Rw16(op::kSynchronizeCache16, n - 1, 2)},
  };
  for (auto& c : cases) {
    Result r = Run(c.cdb, 2 * kBs);
    EXPECT_TRUE(r.Check(sense::kLbaOutOfRange)) << c.name;
  }
  auto data = Pattern(2 * kBs, 5);
  EXPECT_TRUE(Run(Rw10(op::kWrite10, n - 1, 2), 0, data).Check(sense::kLbaOutOfRange));
  EXPECT_TRUE(Run(Rw16(op::kWrite16, n, 1), 0, Pattern(kBs, 1)).Check(sense::kLbaOutOfRange));
  EXPECT_TRUE(Run(Rw12(op::kWriteVerify12, n, 1), 0, Pattern(kBs, 1)).Check(sense::kLbaOutOfRange));
  // Exactly at the end is fine.
  EXPECT_TRUE(Run(Rw10(op::kRead10, n - 1, 1), kBs).Good());
  EXPECT_TRUE(Run(Rw10(op::kRead10, n, 0), 0).Good());
}

TEST_F(SbcTest, ZeroBlocksTransfersNothing) {
  Result r = Run(Rw10(op::kRead10, 0, 0), 0);
  EXPECT_TRUE(r.Good());
  EXPECT_EQ(r.cdb_transfer_length, 0u);
  EXPECT_TRUE(Run(Rw16(op::kWrite16, 0, 0), 0).Good());
  EXPECT_EQ(store_->writes, 0);
}

TEST_F(SbcTest, ProtectFieldsRejected) {
  for (uint8_t p = 1; p < 8; ++p) {
    uint8_t f = uint8_t(p << 5);
    EXPECT_TRUE(Run(Rw10(op::kRead10, 0, 1, f), kBs).Check(sense::kInvalidFieldInCdb));
    EXPECT_TRUE(Run(Rw16(op::kRead16, 0, 1, f), kBs).Check(sense::kInvalidFieldInCdb));
    EXPECT_TRUE(
        Run(Rw12(op::kWrite12, 0, 1, f), 0, Pattern(kBs, 0)).Check(sense::kInvalidFieldInCdb));
    EXPECT_TRUE(Run(Rw10(op::kVerify10, 0, 1, f), 0).Check(sense::kInvalidFieldInCdb));
  }
}

TEST_F(SbcTest, DpoFuaAccepted) {
  auto data = Pattern(kBs, 2);
  EXPECT_TRUE(Run(Rw10(op::kWrite10, 0, 1, 0x18), 0, data).Good());
  EXPECT_EQ(store_->fua_writes, 1);
  EXPECT_TRUE(Run(Rw10(op::kRead10, 0, 1, 0x18), kBs).Good());
}

TEST_F(SbcTest, WriteCacheDisabledMakesWritesFua) {
  // MODE SELECT caching page with WCE = 0.
  std::vector<uint8_t> ms = {0, 0, 0, 0, 0x08, 0x12};
  ms.resize(4 + 20, 0);
  ASSERT_TRUE(Run({op::kModeSelect6, 0x10, 0, 0, uint8_t(ms.size()), 0}, 0, ms).Good());
  EXPECT_TRUE(Write(0, Pattern(kBs, 1)).Good());
  EXPECT_EQ(store_->fua_writes, 1);
}

TEST_F(SbcTest, TransferLengthAboveMaximumRejected) {
  Result b0 = Run({op::kInquiry, 1, 0xb0, 0, 255, 0}, 255);
  uint32_t max = Get32(&b0.data[8]);
  auto big = std::make_shared<MemoryBlockStore>(uint64_t(max + 16) * kBs, kBs);
  ASSERT_TRUE(dev_.AddLogicalUnit(2, big, {}).ok());
  Run({op::kTestUnitReady, 0, 0, 0, 0, 0}, 0, {}, nullptr, 2);
  EXPECT_TRUE(
      Run(Rw16(op::kRead16, 0, max + 1), 0, {}, nullptr, 2).Check(sense::kInvalidFieldInCdb));
}

// libiscsi iSCSIResiduals: writes use only whole blocks of what was sent.
TEST_F(SbcTest, WriteResidualSemantics) {
  ASSERT_TRUE(Write(0, std::vector<uint8_t>(2 * kBs, 'a')).Good());
  // One block in the CDB, EDTL two blocks: only one block written.
  Result r = Run(Rw10(op::kWrite10, 0, 1), 0, std::vector<uint8_t>(2 * kBs, 'b'));
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.cdb_transfer_length, kBs);
  auto back = Read(0, 2).data;
  EXPECT_EQ(back[0], 'b');
  EXPECT_EQ(back[kBs], 'a');
  // Two blocks in the CDB, EDTL one block: only the first block written.
  ASSERT_TRUE(Write(0, std::vector<uint8_t>(2 * kBs, 'a')).Good());
  r = Run(Rw10(op::kWrite10, 0, 2), 0, std::vector<uint8_t>(kBs, 'b'));
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.cdb_transfer_length, 2 * kBs);
  back = Read(0, 2).data;
  EXPECT_EQ(back[0], 'b');
  EXPECT_EQ(back[kBs], 'a');
  // No data at all.
  r = Run(Rw10(op::kWrite10, 0, 1), 0, {});
  EXPECT_TRUE(r.Good());
  EXPECT_EQ(r.cdb_transfer_length, kBs);
}

TEST_F(SbcTest, ReadWithShortEdtlSendsWhatFits) {
  auto data = Pattern(2 * kBs, 4);
  ASSERT_TRUE(Write(0, data).Good());
  Result r = Run(Rw10(op::kRead10, 0, 2), 200);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.cdb_transfer_length, 2 * kBs);
  ASSERT_EQ(r.data.size(), 200u);
  EXPECT_TRUE(std::equal(r.data.begin(), r.data.end(), data.begin()));
}

TEST_F(SbcTest, VerifyCompare) {
  auto data = Pattern(2 * kBs, 8);
  ASSERT_TRUE(Write(100, data).Good());
  EXPECT_TRUE(Run(Rw10(op::kVerify10, 100, 2, 0x02), 0, data).Good());
  EXPECT_TRUE(Run(Rw16(op::kVerify16, 100, 2, 0x02), 0, data).Good());
  auto bad = data;
  bad[kBs + 17] ^= 1;
  Result r = Run(Rw12(op::kVerify12, 100, 2, 0x02), 0, bad);
  ASSERT_TRUE(r.Check(sense::kMiscompareDuringVerify));
  EXPECT_EQ(r.raw_sense[0], 0xf0);  // VALID
  EXPECT_EQ(Get32(&r.raw_sense[3]), kBs + 17);
  // BYTCHK = 0: no comparison.
  EXPECT_TRUE(Run(Rw10(op::kVerify10, 100, 2, 0x00), 0).Good());
  // BYTCHK = 2 is reserved.
  EXPECT_TRUE(Run(Rw10(op::kVerify10, 100, 2, 0x04), 0, data).Check(sense::kInvalidFieldInCdb));
  // BYTCHK = 3: one block compared against each.
  auto same = std::vector<uint8_t>(kBs, 0x5a);
  ASSERT_TRUE(Write(200, std::vector<uint8_t>(3 * kBs, 0x5a)).Good());
  EXPECT_TRUE(Run(Rw10(op::kVerify10, 200, 3, 0x06), 0, same).Good());
}

TEST_F(SbcTest, WriteAndVerify) {
  auto data = Pattern(3 * kBs, 6);
  EXPECT_TRUE(Run(Rw10(op::kWriteVerify10, 7, 3, 0x02), 0, data).Good());
  EXPECT_EQ(Read(7, 3).data, data);
  EXPECT_TRUE(Run(Rw12(op::kWriteVerify12, 7, 3, 0x10), 0, data).Good());
  EXPECT_TRUE(Run(Rw16(op::kWriteVerify16, 7, 3), 0, data).Good());
}

TEST_F(SbcTest, SynchronizeCacheFlushes) {
  EXPECT_TRUE(Run(Rw10(op::kSynchronizeCache10, 0, 0), 0).Good());
  EXPECT_TRUE(Run(Rw16(op::kSynchronizeCache16, 0, 10), 0).Good());
  EXPECT_EQ(store_->flushes, 2);
  EXPECT_TRUE(Run(Rw10(op::kPreFetch10, 0, 10), 0).Good());
}

TEST_F(SbcTest, StoreErrorsBecomeMediumErrors) {
  store_->FailNext(absl::InternalError("disk on fire"));
  EXPECT_TRUE(Read(0, 1).Check(sense::kReadError));
  store_->FailNext(absl::InternalError("disk on fire"));
  EXPECT_TRUE(Write(0, Pattern(kBs, 0)).Check(sense::kWriteError));
}

// ---- UNMAP / WRITE SAME / GET LBA STATUS ----

std::vector<uint8_t> UnmapList(std::vector<std::pair<uint64_t, uint32_t>> d) {
  std::vector<uint8_t> p(8 + 16 * d.size(), 0);
  Put16(&p[0], uint16_t(p.size() - 2));
  Put16(&p[2], uint16_t(16 * d.size()));
  for (size_t i = 0; i < d.size(); ++i) {
    Put64(&p[8 + 16 * i], d[i].first);
    Put32(&p[16 + 16 * i], d[i].second);
  }
  return p;
}

std::vector<uint8_t> UnmapCdb(size_t len, uint8_t flags = 0) {
  return {op::kUnmap, flags, 0, 0, 0, 0, 0, uint8_t(len >> 8), uint8_t(len), 0};
}

std::vector<uint8_t> GetLbaStatusCdb(uint64_t lba, uint32_t alloc) {
  std::vector<uint8_t> c(16, 0);
  c[0] = 0x9e;
  c[1] = 0x12;
  Put64(&c[2], lba);
  Put32(&c[10], alloc);
  return c;
}

TEST_F(SbcTest, UnmapDeallocates) {
  ASSERT_TRUE(Write(10, Pattern(4 * kBs, 1)).Good());
  auto list = UnmapList({{11, 2}});
  ASSERT_TRUE(Run(UnmapCdb(list.size()), 0, list).Good());
  EXPECT_TRUE(store_->mapped(10));
  EXPECT_FALSE(store_->mapped(11));
  EXPECT_FALSE(store_->mapped(12));
  EXPECT_EQ(Read(11, 2).data, std::vector<uint8_t>(2 * kBs, 0));
  Result r = Run(GetLbaStatusCdb(11, 24), 24);
  ASSERT_TRUE(r.Good());
  ASSERT_EQ(r.data.size(), 24u);
  EXPECT_EQ(Get64(&r.data[8]), 11u);
  EXPECT_EQ(Get32(&r.data[16]), 2u);
  EXPECT_EQ(r.data[20], 1);  // deallocated
  r = Run(GetLbaStatusCdb(10, 24), 24);
  EXPECT_EQ(r.data[20], 0);  // mapped
  EXPECT_EQ(Get32(&r.data[16]), 1u);
}

TEST_F(SbcTest, UnmapValidation) {
  EXPECT_TRUE(Run(UnmapCdb(0), 0).Good());  // nothing to do
  EXPECT_TRUE(
      Run(UnmapCdb(4), 0, std::vector<uint8_t>(4, 0)).Check(sense::kParameterListLengthError));
  auto oob = UnmapList({{kBlocks - 1, 2}});
  EXPECT_TRUE(Run(UnmapCdb(oob.size()), 0, oob).Check(sense::kLbaOutOfRange));
  auto anchor = UnmapList({{0, 1}});
  EXPECT_TRUE(Run(UnmapCdb(anchor.size(), 1), 0, anchor).Check(sense::kInvalidFieldInCdb));
  // Zero-length descriptors are fine.
  auto zero = UnmapList({{0, 0}});
  EXPECT_TRUE(Run(UnmapCdb(zero.size()), 0, zero).Good());
}

TEST_F(SbcTest, GetLbaStatusBeyondEnd) {
  EXPECT_TRUE(Run(GetLbaStatusCdb(kBlocks, 24), 24).Check(sense::kLbaOutOfRange));
  EXPECT_TRUE(Run(GetLbaStatusCdb(~0ull, 24), 24).Check(sense::kLbaOutOfRange));
  EXPECT_TRUE(Run(GetLbaStatusCdb(kBlocks - 1, 24), 24).Good());
}

std::vector<uint8_t> Ws10(uint32_t lba, uint16_t blocks, uint8_t flags = 0) {
  std::vector<uint8_t> c(10, 0);
  c[0] = op::kWriteSame10;
  c[1] = flags;
  Put32(&c[2], lba);
  Put16(&c[7], blocks);
  return c;
}

std::vector<uint8_t> Ws16(uint64_t lba, uint32_t blocks, uint8_t flags = 0) {
  std::vector<uint8_t> c(16, 0);
  c[0] = op::kWriteSame16;
  c[1] = flags;
  Put64(&c[2], lba);
  Put32(&c[10], blocks);
  return c;
}

TEST_F(SbcTest, WriteSameReplicatesBlock) {
  auto block = Pattern(kBs, 11);
  ASSERT_TRUE(Run(Ws10(50, 5), 0, block).Good());
  auto back = Read(50, 5).data;
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(std::equal(block.begin(), block.end(), back.begin() + i * kBs)) << i;
  }
  ASSERT_TRUE(Run(Ws16(kBlocks - 3, 3), 0, block).Good());
  EXPECT_TRUE(std::equal(block.begin(), block.end(), Read(kBlocks - 1, 1).data.begin()));
}

TEST_F(SbcTest, WriteSameUnmapZeroes) {
  ASSERT_TRUE(Write(60, Pattern(4 * kBs, 1)).Good());
  ASSERT_TRUE(Run(Ws16(60, 4, 0x08), 0, std::vector<uint8_t>(kBs, 0)).Good());
  EXPECT_FALSE(store_->mapped(61));
  EXPECT_EQ(Read(60, 4).data, std::vector<uint8_t>(4 * kBs, 0));
  // UNMAP deallocates whatever the data (LBPRZ), as libiscsi's UnmapUntilEnd expects;
  // without UNMAP the data is written.
  auto block = Pattern(kBs, 2);
  ASSERT_TRUE(Run(Ws10(60, 1, 0x08), 0, block).Good());
  EXPECT_EQ(Read(60, 1).data, std::vector<uint8_t>(kBs, 0));
  EXPECT_FALSE(store_->mapped(60));
  ASSERT_TRUE(Run(Ws10(60, 1), 0, block).Good());
  EXPECT_EQ(Read(60, 1).data, block);
  // NDOB: no data-out, zeroes.
  ASSERT_TRUE(Run(Ws16(60, 1, 0x09), 0).Good());
  EXPECT_EQ(Read(60, 1).data, std::vector<uint8_t>(kBs, 0));
}

TEST_F(SbcTest, WriteSameValidation) {
  auto block = Pattern(kBs, 3);
  EXPECT_TRUE(Run(Ws10(kBlocks, 1), 0, block).Check(sense::kLbaOutOfRange));
  EXPECT_TRUE(Run(Ws10(kBlocks + 1, 0), 0, block).Check(sense::kLbaOutOfRange));
  EXPECT_TRUE(Run(Ws16(~0ull, 0), 0, block).Check(sense::kLbaOutOfRange));
  EXPECT_TRUE(Run(Ws10(0, 1, 0x20), 0, block).Check(sense::kInvalidFieldInCdb));  // WRPROTECT
  EXPECT_TRUE(Run(Ws10(0, 1, 0x10), 0, block).Check(sense::kInvalidFieldInCdb));  // ANCHOR
  // Data-out must be exactly one block.
  EXPECT_FALSE(Run(Ws10(0, 1, 0x08), 0, std::vector<uint8_t>(kBs / 2, 0)).Good());
  EXPECT_FALSE(Run(Ws10(0, 1, 0x08), 0, std::vector<uint8_t>(kBs * 2, 0)).Good());
  // 0 blocks (WSNZ = 0) writes to the end of the medium.
  ASSERT_TRUE(Run(Ws10(kBlocks - 2, 0), 0, block).Good());
  EXPECT_EQ(Read(kBlocks - 2, 2).data.size(), 2 * kBs);
  EXPECT_TRUE(std::equal(block.begin(), block.end(), Read(kBlocks - 1, 1).data.begin()));
}

// ---- COMPARE AND WRITE ----

std::vector<uint8_t> Caw(uint64_t lba, uint8_t blocks, uint8_t flags = 0) {
  std::vector<uint8_t> c(16, 0);
  c[0] = op::kCompareAndWrite;
  c[1] = flags;
  Put64(&c[2], lba);
  c[13] = blocks;
  return c;
}

TEST_F(SbcTest, CompareAndWrite) {
  auto old_data = Pattern(2 * kBs, 1);
  auto new_data = Pattern(2 * kBs, 2);
  ASSERT_TRUE(Write(300, old_data).Good());
  std::vector<uint8_t> buf = old_data;
  buf.insert(buf.end(), new_data.begin(), new_data.end());
  Result r = Run(Caw(300, 2), 0, buf);
  ASSERT_TRUE(r.Good());
  EXPECT_EQ(r.cdb_transfer_length, 4 * kBs);
  EXPECT_EQ(Read(300, 2).data, new_data);
  // Now the verify data no longer matches.
  r = Run(Caw(300, 2), 0, buf);
  ASSERT_TRUE(r.Check(sense::kMiscompareDuringVerify));
  EXPECT_EQ(Get32(&r.raw_sense[3]), 0u);
  EXPECT_EQ(Read(300, 2).data, new_data);
}

TEST_F(SbcTest, CompareAndWriteValidation) {
  EXPECT_TRUE(
      Run(Caw(kBlocks - 1, 2), 0, std::vector<uint8_t>(4 * kBs)).Check(sense::kLbaOutOfRange));
  EXPECT_TRUE(
      Run(Caw(0, 1, 0x20), 0, std::vector<uint8_t>(2 * kBs)).Check(sense::kInvalidFieldInCdb));
  EXPECT_FALSE(Run(Caw(0, 1), 0, std::vector<uint8_t>(4 * kBs)).Good());
  EXPECT_FALSE(Run(Caw(0, 3), 0, std::vector<uint8_t>(4 * kBs)).Good());
  EXPECT_TRUE(Run(Caw(0, 0), 0).Good());
  // 256 blocks wrap to 0 in the CDB; the data-out gives it away.
  EXPECT_TRUE(Run(Caw(0, 0), 0, std::vector<uint8_t>(512 * kBs)).Check(sense::kInvalidFieldInCdb));
}

TEST_F(SbcTest, CompareAndWriteSerializedPerLu) {
  store_->set_async(true);
  auto zero = std::vector<uint8_t>(kBs, 0);
  auto a = Pattern(kBs, 1);
  auto b = Pattern(kBs, 2);
  std::vector<uint8_t> buf_a = zero, buf_b = zero;
  buf_a.insert(buf_a.end(), a.begin(), a.end());
  buf_b.insert(buf_b.end(), b.begin(), b.end());
  // Both expect zeroes; only the first may succeed.
  ScsiTask t1, t2;
  std::vector<uint8_t> c1 = Caw(400, 1), c2 = Caw(400, 1);
  t1.nexus = &n1_;
  t1.cdb = c1;
  t1.data_out = buf_a;
  t2.nexus = &n2_;
  t2.cdb = c2;
  t2.data_out = buf_b;
  bool d1 = false, d2 = false;
  dev_.Execute(t1, [&] { d1 = true; });
  dev_.Execute(t2, [&] { d2 = true; });
  while (store_->RunPending() > 0) {
  }
  ASSERT_TRUE(d1 && d2);
  EXPECT_EQ(t1.status, ScsiStatus::kGood);
  EXPECT_EQ(t2.status, ScsiStatus::kCheckCondition);
  EXPECT_EQ(ParseSense(t2.sense), sense::kMiscompareDuringVerify);
}

TEST_F(SbcTest, OrWrite) {
  ASSERT_TRUE(Write(500, std::vector<uint8_t>(2 * kBs, 0x0f)).Good());
  ASSERT_TRUE(Run(Rw16(op::kOrWrite16, 500, 2), 0, std::vector<uint8_t>(2 * kBs, 0x30)).Good());
  EXPECT_EQ(Read(500, 2).data, std::vector<uint8_t>(2 * kBs, 0x3f));
  EXPECT_TRUE(Run(Rw16(op::kOrWrite16, kBlocks, 1), 0, std::vector<uint8_t>(kBs))
                  .Check(sense::kLbaOutOfRange));
  EXPECT_TRUE(Run(Rw16(op::kOrWrite16, 0, 1, 0x20), 0, std::vector<uint8_t>(kBs))
                  .Check(sense::kInvalidFieldInCdb));
  EXPECT_TRUE(Run(Rw16(op::kOrWrite16, 0, 0), 0).Good());
}

}  // namespace
}  // namespace iser::scsi::testing
